// SPDX-License-Identifier: Apache-2.0
// --users FILE (WS_RELAY_USERS): one person per line, the SHA-256 of their
// token instead of the token, so the file holds nothing a reader could log in
// with:
//
//   # NAME   GROUP[,GROUP...]   sha256:HEX
//   alice    approvers,ops      sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//   bob      viewers            sha256:...
//
// Fields are separated by spaces or tabs; `#` starts a comment (a whole line
// or the rest of one); blank lines are skipped. NAME is 1-128 characters of
// [A-Za-z0-9._@+-], not starting with `@` (so `--approvers @NAME` is never
// ambiguous); each GROUP is 1-64 of [A-Za-z0-9._:-]; `-` alone means "no
// groups". HEX is exactly 64 hex digits (either case). Every bad line is
// named ("FILE:LINE: why") and the whole file is refused: a half-read users
// file would silently lock people out or, worse, keep a removed one in. A
// NAME given twice is refused too (which line would count?).
//
// Tokens are looked up by hashing the presented token and comparing the hash
// with *every* entry's (CRYPTO_memcmp, no early exit), so the time taken
// says nothing about which entry, or how much of one, matched. No function
// here logs or returns a token or a hash in a message.
//
// Threads: UsersFile is an immutable value once loaded; lookup() is const
// and may be called from any thread. ws-relay loads one at startup and on
// SIGHUP (then swaps it in under the relay's lock).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "smws/auth/identity.h"
#include "smws/status.h"

namespace smws::auth {

// Bound on the file: every structure in the relay is bounded, and a users
// file is typed by people; 100,000 lines is far beyond any team.
constexpr std::size_t kMaxUsers = 100000;

using Sha256 = std::array<unsigned char, 32>;

struct UserEntry {
  std::string name;
  std::vector<std::string> groups;
  Sha256 token_hash{};
  std::size_t line = 0;  // where it was in the file (1-based)
};

class UsersFile {
 public:
  // Reads and parses path. Errors: kNotFound (missing), kIo (unreadable),
  // kBadInput ("FILE:LINE: why", one line per bad line, all of them).
  static Status load(const std::string& path, UsersFile* out);
  // The same over text already read; `source` names it in messages.
  static Status parse(std::string_view text, const std::string& source, UsersFile* out);

  // The identity (via "users") whose token this is, or nullopt. Constant
  // time over the entries (see above).
  std::optional<Identity> lookup(std::string_view token) const;

  const std::vector<UserEntry>& entries() const { return entries_; }
  const UserEntry* find(std::string_view name) const;
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<UserEntry> entries_;
};

// NAME and GROUP as the file accepts them; the error says what is wrong
// ("user name \"x y\": ...").
Status validate_user_name(std::string_view name);
// "a,b,c" (or "-" for none) → groups, each validated, duplicates dropped.
Status parse_group_list(std::string_view csv, std::vector<std::string>* out);

// ws-relay --new-token NAME GROUPS: a fresh token (32 bytes from RAND_bytes,
// 256 bits, base64url without padding: 43 characters, safe in ?token=) and
// the line to add to the users file ("NAME GROUPS sha256:HEX").
struct NewToken {
  std::string token;
  std::string line;
};
// kUsage when NAME or GROUPS is not valid, kInternal when RAND_bytes fails.
Status new_token(std::string_view name, std::string_view groups_csv, NewToken* out);

// SHA-256 of text, and its lower-case hex.
Sha256 sha256(std::string_view text);
std::string hex(const unsigned char* data, std::size_t size);

// After SIGHUP: the names whose connections must be closed 1008 "credentials
// revoked" — in `before` and either absent from `after` or changed there
// (other groups or another token hash). Sorted, no duplicates.
std::vector<std::string> revoked_names(const UsersFile& before, const UsersFile& after);

}  // namespace smws::auth
