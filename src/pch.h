// Precompiled header shared by the library, the CLI and the tests.
#pragma once
#include <torch/torch.h>
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <stdexcept>
