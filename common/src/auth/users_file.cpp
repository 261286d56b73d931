// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/users_file.h"

#include "smws/auth/file_text.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "smws/auth/jwt.h"

namespace smws::auth {
namespace {

constexpr std::size_t kMaxNameLength = 128;
constexpr std::size_t kMaxGroupLength = 64;
constexpr std::size_t kTokenBytes = 32;  // 256 bits; SPEC asks >= 128

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '@' || c == '+' || c == '-';
}

bool group_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

// A name in a message: only characters the file would accept pass through,
// so a bad line cannot put control characters into the log.
std::string shown(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (text.size() > 64) out += "...";
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// "" when the line is fine, else why not.
std::string parse_line(std::string_view line, UserEntry* entry) {
  auto fields = fields_of(line);
  if (fields.size() != 3) {
    return "expected NAME GROUP[,GROUP...] sha256:HEX, found " + std::to_string(fields.size()) +
           (fields.size() == 1 ? " field" : " fields");
  }
  if (auto st = validate_user_name(fields[0]); !st.ok()) return st.message;
  entry->name = std::string(fields[0]);
  entry->groups.clear();
  if (auto st = parse_group_list(fields[1], &entry->groups); !st.ok()) return st.message;
  std::string_view hash = fields[2];
  if (hash.rfind("sha256:", 0) != 0) return "the third field must be sha256:HEX (the SHA-256 of the token, never the token)";
  hash.remove_prefix(7);
  if (hash.size() != 64) return "sha256: needs exactly 64 hex digits, found " + std::to_string(hash.size()) + " characters";
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = hex_value(hash[2 * i]);
    int lo = hex_value(hash[2 * i + 1]);
    if (hi < 0 || lo < 0) return "sha256: holds a character that is not a hex digit";
    entry->token_hash[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return "";
}

}  // namespace

Sha256 sha256(std::string_view text) {
  Sha256 out{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &size, EVP_sha256(), nullptr);
  return out;
}

std::string hex(const unsigned char* data, std::size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 15];
  }
  return out;
}

Status validate_user_name(std::string_view name) {
  if (name.empty()) return Status::Error(Status::kUsage, "user name is empty");
  if (name.size() > kMaxNameLength) {
    return Status::Error(Status::kUsage, "user name \"" + shown(name) + "\" is longer than " +
                                             std::to_string(kMaxNameLength) + " characters");
  }
  if (name[0] == '@') {
    return Status::Error(Status::kUsage, "user name \"" + shown(name) +
                                             "\" starts with @ (--approvers @NAME would be ambiguous)");
  }
  for (char c : name) {
    if (!name_char(c)) {
      return Status::Error(Status::kUsage, "user name \"" + shown(name) +
                                               "\" may hold only letters, digits and . _ @ + -");
    }
  }
  return Status::Ok();
}

Status parse_group_list(std::string_view csv, std::vector<std::string>* out) {
  out->clear();
  if (csv == "-") return Status::Ok();
  std::size_t start = 0;
  for (;;) {
    std::size_t comma = csv.find(',', start);
    std::string_view group = csv.substr(start, comma == std::string_view::npos ? csv.npos : comma - start);
    if (group.empty()) {
      return Status::Error(Status::kUsage, "groups \"" + shown(csv) +
                                               "\": an empty group (two commas, or one at an end); use - for none");
    }
    if (group.size() > kMaxGroupLength) {
      return Status::Error(Status::kUsage, "group \"" + shown(group) + "\" is longer than " +
                                               std::to_string(kMaxGroupLength) + " characters");
    }
    for (char c : group) {
      if (!group_char(c)) {
        return Status::Error(Status::kUsage, "group \"" + shown(group) +
                                                 "\" may hold only letters, digits and . _ : -");
      }
    }
    if (std::find(out->begin(), out->end(), group) == out->end()) out->emplace_back(group);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return Status::Ok();
}

Status UsersFile::parse(std::string_view text, const std::string& source, UsersFile* out) {
  UsersFile file;
  std::string errors;
  std::size_t bad = 0;
  std::unordered_set<std::string> names;
  std::size_t number = 0;
  std::size_t pos = 0;
  auto report = [&](const std::string& why) {
    if (++bad <= 20) errors += (errors.empty() ? "" : "\n") + source + ":" + std::to_string(number) + ": " + why;
  };
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    UserEntry entry;
    entry.line = number;
    std::string why = parse_line(line, &entry);
    if (!why.empty()) {
      report(why);
      continue;
    }
    if (!names.insert(entry.name).second) {
      auto first = std::find_if(file.entries_.begin(), file.entries_.end(),
                                [&](const UserEntry& e) { return e.name == entry.name; });
      report("user " + entry.name + " is already on line " + std::to_string(first->line) +
             " (one line per person)");
      continue;
    }
    if (file.entries_.size() >= kMaxUsers) {
      report("more than " + std::to_string(kMaxUsers) + " users");
      break;
    }
    file.entries_.push_back(std::move(entry));
  }
  if (bad > 0) {
    if (bad > 20) errors += "\n" + source + ": ... and " + std::to_string(bad - 20) + " more bad lines";
    return Status::Error(Status::kBadInput, errors);
  }
  *out = std::move(file);
  return Status::Ok();
}

Status UsersFile::load(const std::string& path, UsersFile* out) {
  std::string text;
  if (Status s = read_file_text(path, "users file", &text); !s.ok()) return s;
  return parse(text, path, out);
}

std::optional<Identity> UsersFile::lookup(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  const Sha256 presented = sha256(token);
  // Every entry is compared, and the match is picked without a branch on
  // the comparison, so the time depends on the file's size only.
  std::size_t found = entries_.size();
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const int differs = CRYPTO_memcmp(presented.data(), entries_[i].token_hash.data(), presented.size());
    const std::size_t mask = static_cast<std::size_t>(0) - static_cast<std::size_t>(differs == 0);
    found = (i & mask) | (found & ~mask);
  }
  if (found == entries_.size()) return std::nullopt;
  const UserEntry& e = entries_[found];
  return Identity{e.name, e.groups, std::string(kViaUsers), std::nullopt};
}

const UserEntry* UsersFile::find(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

Status new_token(std::string_view name, std::string_view groups_csv, NewToken* out) {
  if (auto st = validate_user_name(name); !st.ok()) return st;
  std::vector<std::string> groups;
  if (auto st = parse_group_list(groups_csv, &groups); !st.ok()) return st;
  unsigned char bytes[kTokenBytes];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return Status::Error(Status::kInternal, "cannot get random bytes for a token (RAND_bytes failed)");
  }
  NewToken t;
  t.token = base64url_encode({reinterpret_cast<const char*>(bytes), sizeof bytes});
  OPENSSL_cleanse(bytes, sizeof bytes);
  std::string group_text;
  for (const auto& g : groups) group_text += (group_text.empty() ? "" : ",") + g;
  if (group_text.empty()) group_text = "-";
  const Sha256 h = sha256(t.token);
  t.line = std::string(name) + " " + group_text + " sha256:" + hex(h.data(), h.size());
  *out = std::move(t);
  return Status::Ok();
}

std::vector<std::string> revoked_names(const UsersFile& before, const UsersFile& after) {
  std::vector<std::string> out;
  for (const auto& old : before.entries()) {
    const UserEntry* now = after.find(old.name);
    if (now == nullptr || now->groups != old.groups || now->token_hash != old.token_hash) {
      out.push_back(old.name);
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace smws::auth
