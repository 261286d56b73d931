// SPDX-License-Identifier: Apache-2.0
#include "smws/auth/audit_chain.h"

#include "smws/auth/file_text.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "smws/auth/users_file.h"

namespace smws::auth {

const char* const kAuditGenesis = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

namespace {

using json = nlohmann::json;

constexpr const char* kContinued = "audit_continued";

struct Parsed {
  bool ok = false;  // a JSON object with a string prev and an unsigned audit_seq
  std::string prev;
  std::uint64_t seq = 0;
  bool continued = false;
};

Parsed parse(std::string_view line) {
  Parsed p;
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return p;
  auto prev = j.find("prev");
  auto seq = j.find("audit_seq");
  if (prev == j.end() || !prev->is_string() || seq == j.end() || !seq->is_number_unsigned()) return p;
  p.prev = prev->get<std::string>();
  p.seq = seq->get<std::uint64_t>();
  if (auto t = j.find("type"); t != j.end() && t->is_string() && *t == kContinued) p.continued = true;
  p.ok = p.seq >= 1;
  return p;
}

// Lines of text; *incomplete when the last one has no "\n".
std::vector<std::string_view> split(std::string_view text, bool* incomplete) {
  std::vector<std::string_view> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      lines.push_back(text.substr(pos));
      *incomplete = true;
      return lines;
    }
    lines.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  *incomplete = false;
  return lines;
}

AuditVerdict bad(std::size_t records, std::size_t line, std::string what) {
  AuditVerdict v;
  v.records = records;
  v.line = line;
  v.what = std::move(what);
  return v;
}

}  // namespace

std::string audit_line_hash(std::string_view line) {
  const Sha256 h = sha256(line);
  return "sha256:" + hex(h.data(), h.size());
}

AuditChain::AuditChain() : prev_(kAuditGenesis) {}

Status AuditChain::resume_text(std::string_view text, const std::string& source, AuditChain* out) {
  bool incomplete = false;
  auto lines = split(text, &incomplete);
  if (lines.empty()) {
    *out = AuditChain();
    return Status::Ok();
  }
  if (incomplete) {
    return Status::Error(Status::kBadInput, "audit file " + source + ": line " + std::to_string(lines.size()) +
                                                " is incomplete (no newline); the chain cannot go on from it");
  }
  const Parsed last = parse(lines.back());
  if (!last.ok) {
    return Status::Error(Status::kBadInput, "audit file " + source + ": line " + std::to_string(lines.size()) +
                                                " is not a chained record (no prev/audit_seq); rotate it away first");
  }
  AuditChain c;
  c.prev_ = audit_line_hash(lines.back());
  c.seq_ = last.seq + 1;
  *out = std::move(c);
  return Status::Ok();
}

Status AuditChain::resume(const std::string& path, AuditChain* out) {
  std::string text;
  Status st = read_file_text(path, "audit file", &text);
  if (st.code == Status::kNotFound) {
    *out = AuditChain();
    return Status::Ok();
  }
  if (!st.ok()) return st;
  return resume_text(text, path, out);
}

std::string AuditChain::line_for(const json& record) const {
  json line = record.is_object() ? record : json{{"record", record}};
  line["prev"] = prev_;
  line["audit_seq"] = seq_;
  return line.dump(-1, ' ', false, json::error_handler_t::replace);
}

void AuditChain::commit(std::string_view line) {
  prev_ = audit_line_hash(line);
  ++seq_;
}

std::string AuditChain::continuation(double now_wall) const {
  return line_for(json{{"type", kContinued}, {"logged_at", now_wall}});
}

std::string AuditVerdict::text() const {
  if (intact) return "intact, " + std::to_string(records) + (records == 1 ? " record" : " records");
  return "line " + std::to_string(line) + ": " + what;
}

AuditVerdict verify_audit_text(std::string_view text) {
  bool incomplete = false;
  const auto lines = split(text, &incomplete);
  const std::size_t m = lines.size();
  std::vector<Parsed> p(m + 1);
  std::vector<std::string> h(m + 1);
  h[0] = kAuditGenesis;  // a virtual line 0, so line 1 links like any other
  for (std::size_t i = 1; i <= m; ++i) {
    p[i] = parse(lines[i - 1]);
    h[i] = audit_line_hash(lines[i - 1]);
  }
  auto links_to = [&](std::size_t i, std::size_t j) {  // line i names line j as its previous
    return i >= 1 && i <= m && p[i].ok && p[i].prev == h[j];
  };
  for (std::size_t i = 1; i <= m; ++i) {
    if (i == 1) {
      if (p[1].ok && p[1].seq > 1 && p[1].continued) continue;  // a rotated file: its origin is the older file
      if (p[1].ok && p[1].seq == 1 && p[1].prev == h[0]) continue;
      if (links_to(2, 0) && p[2].seq == 1) return bad(m, 1, "inserted (line 2 begins the chain)");
      if (p[1].ok && p[1].seq > 1 && !p[1].continued) {
        return bad(m, 1, "removed: the file starts at record " + std::to_string(p[1].seq) +
                             " of its chain with no audit_continued line before it (lines were removed from its start)");
      }
      return bad(m, 1, p[1].ok ? "changed (it does not begin the chain)" : "changed (not a chained record)");
    }
    if (p[i].ok && p[i].prev == h[i - 1] && p[i].seq == p[i - 1].seq + 1) continue;
    // The first broken link is between lines i-1 and i.
    if (links_to(i, i - 2)) {
      return bad(m, i - 1, "inserted (line " + std::to_string(i) +
                               (i == 2 ? " begins the chain)" : " names line " + std::to_string(i - 2) + " as its previous)"));
    }
    if (links_to(i + 1, i - 1)) return bad(m, i, "inserted (line " + std::to_string(i + 1) + " names line " +
                                                     std::to_string(i - 1) + " as its previous)");
    if (!p[i].ok) return bad(m, i, "changed (not a chained record)");
    if (p[i].prev == h[i - 1]) return bad(m, i, "changed (its audit_seq is not " + std::to_string(p[i - 1].seq + 1) + ")");
    if (p[i].seq > p[i - 1].seq + 1) {
      const std::uint64_t from = p[i - 1].seq + 1, to = p[i].seq - 1;
      return bad(m, i, "removed before it: " +
                           (from == to ? "record " + std::to_string(from) + " is missing"
                                       : "records " + std::to_string(from) + "-" + std::to_string(to) + " are missing"));
    }
    if (i < m && !links_to(i + 1, i)) return bad(m, i, "changed");
    if (i == m) {
      // Nothing after the last line vouches for it: its prev or the line
      // before may have changed.
      return bad(m, i - 1, "changed, or line " + std::to_string(i) + "'s prev was (line " + std::to_string(i) +
                               " names another hash for it, and no line after it tells which)");
    }
    return bad(m, i - 1, "changed (line " + std::to_string(i) + " names another hash for it)");
  }
  if (incomplete) return bad(m, m, "incomplete (no newline at the end: a write cut short, or a line added by hand)");
  AuditVerdict v;
  v.intact = true;
  v.records = m;
  return v;
}

Status verify_audit(const std::string& path, AuditVerdict* out) {
  std::string text;
  if (auto st = read_file_text(path, "audit file", &text); !st.ok()) return st;
  *out = verify_audit_text(text);
  return Status::Ok();
}

}  // namespace smws::auth
