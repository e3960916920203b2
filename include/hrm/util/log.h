#pragma once
// Logging: hrm's messages go through spdlog (library-internal) to stdout, and to a file while a FileSink lives
// (`hrm train` keeps RUN_DIR/train.log). Results a command exists to print (eval metrics, solve grids) are written
// to stdout directly, not logged.
#include <memory>
#include <string>

namespace hrm::log {

enum class Level { trace, debug, info, warn, error, off };

// "trace" | "debug" | "info" | "warn" | "error" | "off"; anything else throws hrm::Error naming the valid names.
Level parse_level(const std::string& name);
void set_level(Level level);
Level level();

// Messages (at every level enabled) are appended to `path` too, with a timestamp and the level, while this lives.
class FileSink {
 public:
  explicit FileSink(const std::string& path);
  ~FileSink();
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

 private:
  std::shared_ptr<void> sink_;
};

void trace(const std::string& message);
void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace hrm::log
