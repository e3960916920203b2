#include <filesystem>
#include <sstream>

#include "test_util.h"

using namespace hrm;
namespace fs = std::filesystem;

TEST(Reference, SmallRopeFixtureMatchesEverySavedTensor) {
  HRM_REQUIRE_FIXTURE();
  std::ostringstream log;
  const VerifyResult r = verify_reference(hrm::test::fixture_dir(), VerifyOptions{}, log);
  EXPECT_TRUE(r.ok) << log.str();
  EXPECT_EQ(r.failed_groups, 0) << log.str();
  // 1 state-dict group + 6 groups per training segment + eval segments.
  EXPECT_GE(r.groups, 1 + 6 * 7 + 3) << log.str();
  EXPECT_NE(log.str().find("free-running replay"), std::string::npos);
}

TEST(Reference, APerturbedFixtureFails) {
  HRM_REQUIRE_FIXTURE();
  hrm::test::TempDir dir;
  fs::copy(hrm::test::fixture_dir(), dir.str(), fs::copy_options::recursive);
  for (auto& e : fs::recursive_directory_iterator(dir.str()))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  // Nudge one logit of segment 3 by 1e-3: exactly that group must fail.
  const std::string path = dir.str() + "/steps/3/logits.npy";
  torch::Tensor logits = npy::load(path);
  logits[0][0][0] += 1e-3;
  npy::save(path, logits);
  std::ostringstream log;
  VerifyOptions opt;
  opt.free_running = false;
  const VerifyResult r = verify_reference(dir.str(), opt, log);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failed_groups, 1) << log.str();
  EXPECT_NE(log.str().find("[FAIL] train seg 3 outputs"), std::string::npos) << log.str();
}

TEST(Reference, MissingFixtureFilesAreNamed) {
  hrm::test::TempDir dir;
  std::ostringstream log;
  try {
    verify_reference(dir.str(), VerifyOptions{}, log);
    FAIL();
  } catch (const hrm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json"), std::string::npos) << e.what();
  }
}

TEST(Reference, TheEmaOfTheTrmFixtureIsCompared) {
  const std::string fixture = hrm::test::fixtures_root() + "/trm_attn_rope";
  if (!fs::exists(fixture + "/manifest.json")) GTEST_SKIP() << "no fixture at " << fixture << ": skipped";
  hrm::test::TempDir dir;
  fs::copy(fixture, dir.str(), fs::copy_options::recursive);
  for (auto& e : fs::recursive_directory_iterator(dir.str()))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  VerifyOptions opt;
  opt.free_running = false;
  std::ostringstream clean;
  const VerifyResult ok = verify_reference(dir.str(), opt, clean);
  EXPECT_TRUE(ok.ok) << clean.str();
  EXPECT_NE(clean.str().find("train seg 2 EMA after step"), std::string::npos) << clean.str();
  // Nudge one EMA element after segment 2: that group (and the next segment's, which starts from it) must fail.
  const std::string path = dir.str() + "/steps/2/ema_model.inner.lm_head.weight.npy";
  torch::Tensor w = npy::load(path);
  w[0][0] += 1e-3;
  npy::save(path, w);
  std::ostringstream log;
  const VerifyResult r = verify_reference(dir.str(), opt, log);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(log.str().find("[FAIL] train seg 2 EMA after step"), std::string::npos) << log.str();
}
