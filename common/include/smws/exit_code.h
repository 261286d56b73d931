// SPDX-License-Identifier: Apache-2.0
// The one table of exit codes (sysexits.h values), shared by every tool and
// named in every man page's EXIT STATUS section. See ../shared SPEC
// "Conventions shared by every tool"; docs/protocol.md repeats it.
#pragma once

#include "smws/status.h"

namespace smws {

enum ExitCode : int {
  kExitOk = 0,
  kExitNegative = 1,       // a negative answer: probe found it unhealthy, decision was reject
  kExitUsage = 64,         // EX_USAGE: wrong flags or arguments
  kExitDataErr = 65,       // EX_DATAERR: bad input data
  kExitNoInput = 66,       // EX_NOINPUT: an input file is missing
  kExitUnavailable = 69,   // EX_UNAVAILABLE: peer or service unavailable
  kExitSoftware = 70,      // EX_SOFTWARE: internal error
  kExitCantCreate = 73,    // EX_CANTCREAT: cannot create a socket or file
  kExitIoErr = 74,         // EX_IOERR: I/O error
  kExitTempFail = 75,      // EX_TEMPFAIL: timed out
  kExitNoPerm = 77,        // EX_NOPERM: permission denied
};

// The one mapping from a Status to the SPEC's exit code. A tool applies its
// own policy first (sm-send: no listener is success unless --strict; a
// signal during --wait-reply is a timeout), then maps what is left here.
int exit_code_for(const Status& status);

}  // namespace smws
