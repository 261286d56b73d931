// SPDX-License-Identifier: Apache-2.0
// Locks the compiler checks (leveldb's port/thread_annotations.h): clang's
// -Wthread-safety verifies that a member marked GUARDED_BY(mu) is touched
// only with mu held, and that a function marked REQUIRES(mu) is called only
// so. GCC ignores the attributes. The test `thread_safety` (tests/
// CMakeLists.txt) compiles the annotated files with clang and
// -Werror=thread-safety, so a lock list cannot drift from the code.
//
// libstdc++'s std::mutex carries no annotations, so annotated code locks a
// smws::Mutex through a MutexLock.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define SMWS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define SMWS_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) SMWS_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY SMWS_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) SMWS_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) SMWS_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) SMWS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) SMWS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) SMWS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) SMWS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) SMWS_THREAD_ANNOTATION(assert_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS SMWS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace smws {

class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  // Tells the analysis the caller holds the lock (a callback the holder
  // runs, such as RelayHub's interceptors). Checks nothing at run time.
  void assert_held() const ASSERT_CAPABILITY(this) {}

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope (or until unlock()).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : lock_(mu->mu_) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  void unlock() RELEASE() { lock_.unlock(); }

  // Waits on cv, the lock released meanwhile and held again on return,
  // for at most `timeout` (every wait in this project is bounded).
  template <class Rep, class Period>
  void wait_for(std::condition_variable& cv, std::chrono::duration<Rep, Period> timeout) {
    cv.wait_for(lock_, timeout);
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace smws
