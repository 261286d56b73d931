// SPDX-License-Identifier: Apache-2.0
// The one status type of the library (leveldb's Status, made plain): an
// expected failure is a value with a code and a message a user can act on,
// never an exception. Modules catch POCO and JSON exceptions at their edge and
// return a Status; only a tool's top level prints it and picks the exit code,
// through exit_code_for() in exit_code.h, the one place codes become exits.
//
// Codes name what went wrong, finely enough that a caller can decide a policy
// (sm-send treats kNoListener as success unless --strict) before mapping.
#pragma once

#include <string>
#include <utility>

namespace smws {

struct Status {
  enum Code {
    kOk,
    // Sockets (unix_datagram):
    kInUse,        // bind: a live socket already serves the path
    kNotSocket,    // bind: the path exists and is not a socket (never touched)
    kNoListener,   // connect/send: nobody is bound to the path
    kPermission,   // EACCES/EPERM, a refused token or origin
    kTooBig,       // EMSGSIZE: datagram larger than the socket accepts
    kPathTooLong,  // longer than sun_path allows (107 bytes on Linux)
    kCancelled,    // interrupted by a signal and the cancel hook said stop
    kSystem,       // any other system call failure; see err
    // Everything else:
    kUsage,        // a bad flag value or argument (URL, address, filter)
    kBadInput,     // malformed data (JSON, an event, a decision)
    kNotFound,     // an input file is missing
    kCantCreate,   // cannot create or bind a socket or file
    kIo,           // reading or writing failed
    kUnavailable,  // a peer or service cannot be reached
    kTimedOut,     // a deadline passed
    kTls,          // TLS set-up failed: a certificate or key that does not load
    kInternal,     // a bug: should not happen
  };
  Code code = kOk;
  int err = 0;          // errno, when one applies
  std::string message;  // "what: why", ready for log::error

  bool ok() const { return code == kOk; }
  static Status Ok() { return {}; }
  static Status Error(Code code, int err, std::string message) {
    Status s;
    s.code = code;
    s.err = err;
    s.message = std::move(message);
    return s;
  }
  static Status Error(Code code, std::string message) { return Error(code, 0, std::move(message)); }
};

}  // namespace smws
