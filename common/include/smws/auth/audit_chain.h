// SPDX-License-Identifier: Apache-2.0
// The audit file as a hash chain (SPEC "Records"; ws-relay --verify-audit).
//
// Each record line gets two members from the chain before it is written:
//   "prev":"sha256:<hex>"  the SHA-256 of the previous line's bytes (without
//                          its "\n"); the first line of a fresh chain has
//                          kAuditGenesis, 64 zeros;
//   "audit_seq":N          its number in the chain, 1 for the first record,
//                          continuing across rotated files. With it a removed
//                          line is told from a changed one (without it both
//                          only show as a broken link).
// A record's own "prev" or "audit_seq" (an interrupt from stdin may carry
// anything) is overwritten: the record is the relay's line.
//
// Rotation (SIGHUP reopens the file): the first line of the new file is an
// {"type":"audit_continued","prev":<last hash of the old file>,"audit_seq":K}
// record (AuditChain::continuation), so a file that starts with any other
// record in the middle of a chain shows that lines were removed from its
// start, and a reader of the new file alone sees where it comes from.
//
// What verification proves: that no line of the file was changed, removed
// or inserted *without rewriting every line after it*. It cannot see the
// last lines being cut off, nor a whole tail recomputed by someone who can
// write the file — anchor the last hash elsewhere (docs/security.md).
//
// Threads: AuditChain has no lock; its owner (ws-relay's output thread,
// which writes the audit file) calls it. verify_* are pure functions.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "smws/status.h"

namespace smws::auth {

// prev of the first record of a chain.
extern const char* const kAuditGenesis;  // "sha256:000…0" (64 zeros)

// "sha256:<hex>" of the bytes of one line (no "\n").
std::string audit_line_hash(std::string_view line);

class AuditChain {
 public:
  AuditChain();  // a fresh chain: next prev is genesis, next seq 1

  // Picks the chain up from an existing file: the hash and audit_seq of its
  // last complete line. An empty or missing file: a fresh chain (a missing
  // one is Ok). A last line that is not a chained record: kBadInput (the
  // relay refuses to continue a chain it cannot name).
  static Status resume(const std::string& path, AuditChain* out);
  // The same from a file's text.
  static Status resume_text(std::string_view text, const std::string& source, AuditChain* out);

  // The line (no "\n") for record: its members plus "prev" and "audit_seq".
  // Does not advance: call commit(line) once the line is written (a record
  // that failed to be written is cut off again and must not be linked to).
  std::string line_for(const nlohmann::json& record) const;
  void commit(std::string_view line);

  // The first line of a rotated file: {"type":"audit_continued",
  // "logged_at":now,"prev":…,"audit_seq":…}; commit it like any line.
  std::string continuation(double now_wall) const;

  const std::string& last_hash() const { return prev_; }
  std::uint64_t next_seq() const { return seq_; }

 private:
  std::string prev_;
  std::uint64_t seq_ = 1;
};

struct AuditVerdict {
  bool intact = false;
  std::size_t records = 0;  // lines checked (the continuation line counts)
  std::size_t line = 0;     // !intact: the first bad line, 1-based
  std::string what;         // !intact: "changed", "removed …", "inserted", …
  // "intact, N records" or "line L: what".
  std::string text() const;
};

// Checks a whole file's text (see the rules above). An empty file is intact
// with 0 records.
AuditVerdict verify_audit_text(std::string_view text);

// Reads path and verifies it. kNotFound / kIo when it cannot be read
// (ws-relay --verify-audit exits 66).
Status verify_audit(const std::string& path, AuditVerdict* out);

}  // namespace smws::auth
