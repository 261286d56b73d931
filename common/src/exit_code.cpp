// SPDX-License-Identifier: Apache-2.0
#include "smws/exit_code.h"

namespace smws {

int exit_code_for(const Status& status) {
  switch (status.code) {
    case Status::kOk: return kExitOk;
    case Status::kCancelled: return kExitOk;  // a signal asked for a clean stop
    case Status::kInUse:
    case Status::kNoListener:
    case Status::kUnavailable: return kExitUnavailable;
    case Status::kPermission: return kExitNoPerm;
    case Status::kTooBig:
    case Status::kBadInput:
    case Status::kTls: return kExitDataErr;
    case Status::kPathTooLong:
    case Status::kUsage: return kExitUsage;
    case Status::kNotFound: return kExitNoInput;
    case Status::kNotSocket:
    case Status::kSystem:
    case Status::kCantCreate: return kExitCantCreate;
    case Status::kIo: return kExitIoErr;
    case Status::kTimedOut: return kExitTempFail;
    case Status::kInternal: return kExitSoftware;
  }
  return kExitSoftware;
}

}  // namespace smws
