#pragma once
// Umbrella header: the public API of the hrm library.
#include "hrm/config/model_config.h"
#include "hrm/data/npy.h"
#include "hrm/eval/verify_reference.h"
#include "hrm/loss/act_loss.h"
#include "hrm/model/hrm.h"
#include "hrm/nn/layers.h"
#include "hrm/optim/optimizers.h"
#include "hrm/train/state_dict.h"
#include "hrm/train/train_step.h"
#include "hrm/util/error.h"
#include "hrm/util/memory.h"
#include "hrm/version.h"
