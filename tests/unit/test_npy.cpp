#include <gtest/gtest.h>

#include "hrm/hrm.h"

TEST(Npy, Placeholder) { SUCCEED(); }
