#include "hrm/util/log.h"

#include <algorithm>
#include <mutex>

#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "hrm/util/error.h"

namespace hrm::log {
namespace {

spdlog::logger& logger() {
  static spdlog::logger* instance = [] {
    auto console = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    console->set_pattern("%v");  // the console shows the message alone; the file sink adds time and level
    auto* l = new spdlog::logger("hrm", console);
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::trace);  // lines appear at once (progress is followed by people and scripts)
    return l;
  }();
  return *instance;
}

std::mutex& sinks_mutex() {
  static std::mutex m;
  return m;
}

constexpr const char* kNames[] = {"trace", "debug", "info", "warn", "error", "off"};

}  // namespace

Level parse_level(const std::string& name) {
  for (int i = 0; i < 6; ++i)
    if (name == kNames[i]) return static_cast<Level>(i);
  throw Error("unknown log level '" + name + "' (expected trace, debug, info, warn, error or off)");
}

namespace {
spdlog::level::level_enum spd(Level l) { return static_cast<spdlog::level::level_enum>(static_cast<int>(l)); }
Level g_console_level = Level::info;
// Log files keep at least the info lines whatever the console shows.
spdlog::level::level_enum file_level() { return std::min(spd(g_console_level), spdlog::level::info); }
}  // namespace

// The console sink shows `level`; the logger passes what either the console or a file wants.
void set_level(Level level) {
  std::lock_guard<std::mutex> lock(sinks_mutex());
  g_console_level = level;
  auto& sinks = logger().sinks();
  sinks.front()->set_level(spd(level));
  for (size_t i = 1; i < sinks.size(); ++i) sinks[i]->set_level(file_level());
  logger().set_level(std::min(spd(level), file_level()));
}
Level level() { return g_console_level; }

FileSink::FileSink(const std::string& path) {
  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> sink;
  try {
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  } catch (const spdlog::spdlog_ex& e) {
    throw Error("cannot open log file " + path + ": " + e.what());
  }
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  sink->set_level(file_level());
  std::lock_guard<std::mutex> lock(sinks_mutex());
  logger().sinks().push_back(sink);
  sink_ = sink;
}

FileSink::~FileSink() {
  std::lock_guard<std::mutex> lock(sinks_mutex());
  auto& sinks = logger().sinks();
  sinks.erase(std::remove(sinks.begin(), sinks.end(),
                          std::static_pointer_cast<spdlog::sinks::sink>(
                              std::static_pointer_cast<spdlog::sinks::basic_file_sink_mt>(sink_))),
              sinks.end());
}

void FileSink::record_error(const std::string& message) {
  auto sink = std::static_pointer_cast<spdlog::sinks::basic_file_sink_mt>(sink_);
  sink->log(spdlog::details::log_msg(logger().name(), spdlog::level::err, message));
  sink->flush();
}

void trace(const std::string& message) { logger().trace(message); }
void debug(const std::string& message) { logger().debug(message); }
void info(const std::string& message) { logger().info(message); }
void warn(const std::string& message) { logger().warn(message); }
void error(const std::string& message) { logger().error(message); }

}  // namespace hrm::log
