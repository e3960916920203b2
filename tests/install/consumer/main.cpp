// A research project linking the installed hrm library: build a model, run one training step, save it.
#include <iostream>

#include <hrm/hrm.h>

int main(int argc, char** argv) {
  hrm::ModelConfig config;
  config.batch_size = 2;
  config.seq_len = 4;
  config.vocab_size = 5;
  config.hidden_size = 16;
  config.num_heads = 2;
  config.H_layers = config.L_layers = 1;
  config.halt_max_steps = 2;
  config.forward_dtype = "float32";
  hrm::ACTModel model = hrm::make_model(config);
  hrm::ModelOptimizer optimizer(model, hrm::OptimizerConfig{});
  const hrm::Batch batch{torch::randint(1, 5, {2, 4}, torch::kInt), torch::randint(1, 5, {2, 4}, torch::kInt),
                         torch::zeros({2}, torch::kInt)};
  model->train();
  const auto step =
      hrm::forward_backward(model, model->initial_carry(batch), batch, hrm::LossType::SoftmaxCrossEntropy, 2.0);
  optimizer.step(1e-3, 0.0);
  if (argc > 1) hrm::save_checkpoint(argv[1], model);
  std::cout << "consumer ok: loss " << step.loss.loss.item<double>() << std::endl;
  return 0;
}
