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
  // Appends an error to this file alone (the caller reports it on the console): a run that fails to start or
  // stops with an error says why in its own log.
  void record_error(const std::string& message);
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
