#include "hrm/nn/puzzle_embedding.h"

namespace hrm::nn {

SparsePuzzleEmbeddingImpl::SparsePuzzleEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim,
                                                     c10::ScalarType cast_to)
    : cast_to_(cast_to) {
  weights = register_buffer("weights", torch::zeros({num_embeddings, embedding_dim}));
}

torch::Tensor SparsePuzzleEmbeddingImpl::forward(const torch::Tensor& ids) {
  const torch::Tensor idx = ids.to(torch::kLong);
  if (!is_training() || !torch::GradMode::is_enabled()) return weights.index_select(0, idx).to(cast_to_);
  local_ids = idx;
  local_weights = weights.index_select(0, idx).detach().requires_grad_(true);
  return local_weights.to(cast_to_);
}

}  // namespace hrm::nn
