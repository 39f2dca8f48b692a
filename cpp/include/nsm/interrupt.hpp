#pragma once
// Cooperative interruption of long computations (Ctrl-C from Python): the caller passes a check,
// the computation asks it between whole steps, at most every 50 ms, and throws Interrupted
// when it says stop. The core knows nothing of Python; the bindings supply the check.

#include <chrono>
#include <functional>
#include <stdexcept>
#include <utility>

namespace nsm {

/// Thrown when a computation's stop check asks it to stop. What throws it leaves no partial
/// state behind (each documents what that means for it).
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// Returns true when the computation should stop. Empty: never stop.
using StopCheck = std::function<bool()>;

/// Asks a StopCheck at most once per interval; poll() is cheap in between (one clock read).
/// Not thread-safe: call it from the thread that runs the computation, outside parallel regions.
class StopPoll {
 public:
  using Clock = std::chrono::steady_clock;

  explicit StopPoll(StopCheck check = {},
                    std::chrono::milliseconds interval = std::chrono::milliseconds(50))
      : check_(std::move(check)), interval_(interval), next_(Clock::now() + interval) {}

  /// Whether a check was given (without one, poll() never throws).
  bool active() const { return static_cast<bool>(check_); }

  /// Throws Interrupted if the interval has passed and the check says stop.
  void poll() {
    if (!check_ || Clock::now() < next_) return;
    if (check_()) throw Interrupted();
    next_ = Clock::now() + interval_;
  }

 private:
  StopCheck check_;
  std::chrono::milliseconds interval_;
  Clock::time_point next_;
};

}  // namespace nsm
