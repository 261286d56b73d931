#include "smws/exit_code.h"

namespace smws {

const char* exit_code_name(int code) {
  switch (code) {
    case kExitOk: return "ok";
    case kExitNegative: return "negative";
    case kExitUsage: return "usage";
    case kExitDataErr: return "bad input data";
    case kExitNoInput: return "input missing";
    case kExitUnavailable: return "unavailable";
    case kExitSoftware: return "internal error";
    case kExitCantCreate: return "cannot create";
    case kExitIoErr: return "I/O error";
    case kExitTempFail: return "timed out";
    case kExitNoPerm: return "permission denied";
    default: return "unknown";
  }
}

}  // namespace smws
