// Precompiled header shared by the library, the CLI and the tests.
#pragma once
#include <torch/torch.h>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>
