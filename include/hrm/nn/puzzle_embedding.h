#pragma once
// The per-puzzle embedding of the published models, trained sparsely (SparseSignSGD updates only the rows a batch
// used).
#include <cstdint>

#include <torch/torch.h>

namespace hrm::nn {

// The table is a buffer; a training forward copies the batch's rows into a fresh leaf tensor (`local_weights`)
// whose gradient SparseSignSGD applies to those rows only.
class SparsePuzzleEmbeddingImpl : public torch::nn::Module {
 public:
  SparsePuzzleEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim, c10::ScalarType cast_to);
  torch::Tensor forward(const torch::Tensor& ids);

  torch::Tensor weights;        // [num, dim] float32 (zero init)
  torch::Tensor local_weights;  // [B, dim] leaf of the last training forward with grad enabled
  torch::Tensor local_ids;      // [B] ids of those rows

 private:
  c10::ScalarType cast_to_;
};
TORCH_MODULE(SparsePuzzleEmbedding);

}  // namespace hrm::nn
