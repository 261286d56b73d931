// SPDX-License-Identifier: Apache-2.0
// The audit hash chain (auth/audit_chain.h): lines linked by "prev" and
// "audit_seq", rotation, and verification naming the first changed, removed
// or inserted line.
#include <catch2/catch.hpp>

#include <fstream>
#include <vector>

#include "smws/auth/audit_chain.h"
#include "support.h"

using nlohmann::json;
using namespace smws::auth;
using smws::Status;

namespace {

// n records written through a chain, as lines.
std::vector<std::string> chained(int n, AuditChain* chain) {
  std::vector<std::string> lines;
  for (int i = 1; i <= n; ++i) {
    std::string line = chain->line_for({{"type", "decision"}, {"interrupt_id", "i-" + std::to_string(i)}});
    chain->commit(line);
    lines.push_back(line);
  }
  return lines;
}

std::string text_of(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

}  // namespace

TEST_CASE("each line names the hash of the one before, the first names the genesis", "[auth][audit]") {
  AuditChain chain;
  CHECK(chain.last_hash() == kAuditGenesis);
  auto lines = chained(3, &chain);
  json first = json::parse(lines[0]);
  CHECK(first["prev"] == kAuditGenesis);
  CHECK(first["audit_seq"] == 1);
  CHECK(json::parse(lines[1])["prev"] == audit_line_hash(lines[0]));
  CHECK(json::parse(lines[2])["audit_seq"] == 3);
  CHECK(chain.last_hash() == audit_line_hash(lines[2]));
  CHECK(audit_line_hash("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(verify_audit_text(text_of(lines)).text() == "intact, 3 records");
  CHECK(verify_audit_text("").text() == "intact, 0 records");
}

TEST_CASE("a record's own prev and audit_seq are overwritten by the chain's", "[auth][audit]") {
  AuditChain chain;
  std::string line = chain.line_for({{"type", "interrupt"}, {"prev", "sha256:forged"}, {"audit_seq", 99}});
  CHECK(json::parse(line)["prev"] == kAuditGenesis);
  CHECK(json::parse(line)["audit_seq"] == 1);
}

TEST_CASE("a line not committed (its write failed) is not linked to", "[auth][audit]") {
  AuditChain chain;
  auto lines = chained(1, &chain);
  (void)chain.line_for({{"type", "decision"}, {"lost", true}});  // never written
  auto more = chained(1, &chain);
  lines.push_back(more[0]);
  CHECK(verify_audit_text(text_of(lines)).intact);
}

TEST_CASE("a changed line is named", "[auth][audit]") {
  AuditChain chain;
  auto lines = chained(5, &chain);
  auto tampered = lines;
  tampered[2].replace(tampered[2].find("i-3"), 3, "i-X");
  AuditVerdict v = verify_audit_text(text_of(tampered));
  CHECK_FALSE(v.intact);
  CHECK(v.text() == "line 3: changed (line 4 names another hash for it)");
  // The last line changed: nothing after it vouches for it, except its own link.
  tampered = lines;
  tampered[4] = json::parse(tampered[4]).dump();  // same content, keys re-ordered the same: unchanged
  CHECK(verify_audit_text(text_of(tampered)).intact);
  const std::size_t digit = tampered[4].find("prev\":\"sha256:") + 14;
  tampered[4][digit] = tampered[4][digit] == '0' ? '1' : '0';
  CHECK(verify_audit_text(text_of(tampered)).text() ==
        "line 4: changed, or line 5's prev was (line 5 names another hash for it, and no line after it tells which)");
  // A line that is no longer JSON.
  tampered = lines;
  tampered[1] = "garbage";
  CHECK(verify_audit_text(text_of(tampered)).text() == "line 2: changed (not a chained record)");
  // Its prev rewritten to match, but its seq changed.
  tampered = lines;
  json j = json::parse(tampered[3]);
  j["audit_seq"] = 7;
  tampered[3] = j.dump();
  CHECK(verify_audit_text(text_of(tampered)).text() == "line 4: changed (its audit_seq is not 4)");
}

TEST_CASE("a removed line is named by the line after the gap", "[auth][audit]") {
  AuditChain chain;
  auto lines = chained(6, &chain);
  auto cut = lines;
  cut.erase(cut.begin() + 2);
  CHECK(verify_audit_text(text_of(cut)).text() == "line 3: removed before it: record 3 is missing");
  cut.erase(cut.begin() + 2);
  CHECK(verify_audit_text(text_of(cut)).text() == "line 3: removed before it: records 3-4 are missing");
  // The first line removed.
  cut = lines;
  cut.erase(cut.begin());
  CHECK(verify_audit_text(text_of(cut)).text().rfind("line 1: removed: the file starts at record 2", 0) == 0);
}

TEST_CASE("an inserted line is named, whether or not it links to the line before", "[auth][audit]") {
  AuditChain chain;
  auto lines = chained(4, &chain);
  // Careless: a copied line.
  auto more = lines;
  more.insert(more.begin() + 2, lines[0]);
  CHECK(verify_audit_text(text_of(more)).text() == "line 3: inserted (line 4 names line 2 as its previous)");
  // Careful: a forged line that names line 2's hash and the next seq.
  more = lines;
  json forged = {{"type", "decision"}, {"interrupt_id", "evil"}, {"prev", audit_line_hash(lines[1])}, {"audit_seq", 3}};
  more.insert(more.begin() + 2, forged.dump());
  CHECK(verify_audit_text(text_of(more)).text() == "line 3: inserted (line 4 names line 2 as its previous)");
  // At the very start, with the genesis hash.
  more = lines;
  json first = {{"type", "decision"}, {"prev", kAuditGenesis}, {"audit_seq", 1}};
  more.insert(more.begin(), first.dump());
  CHECK(verify_audit_text(text_of(more)).text() == "line 1: inserted (line 2 begins the chain)");
}

TEST_CASE("an incomplete last line is reported", "[auth][audit]") {
  AuditChain chain;
  auto lines = chained(2, &chain);
  std::string text = text_of(lines);
  text.pop_back();
  CHECK(verify_audit_text(text).text().rfind("line 2: incomplete", 0) == 0);
}

TEST_CASE("rotation: the new file continues the chain from the old one's last line", "[auth][audit]") {
  smws::test::TempDir dir;
  AuditChain chain;
  auto old_lines = chained(3, &chain);
  std::ofstream(dir.file("audit.1")) << text_of(old_lines);
  // The relay restarts, or reopens after logrotate: it resumes from the old file.
  AuditChain resumed;
  REQUIRE(AuditChain::resume(dir.file("audit.1"), &resumed).ok());
  CHECK(resumed.last_hash() == audit_line_hash(old_lines[2]));
  CHECK(resumed.next_seq() == 4);
  std::string head = resumed.continuation(1700000000.5);
  json h = json::parse(head);
  CHECK(h["type"] == "audit_continued");
  CHECK(h["prev"] == audit_line_hash(old_lines[2]));
  CHECK(h["audit_seq"] == 4);
  resumed.commit(head);
  std::vector<std::string> new_lines = {head};
  for (const auto& l : chained(2, &resumed)) new_lines.push_back(l);
  CHECK(verify_audit_text(text_of(new_lines)).text() == "intact, 3 records");
  CHECK(json::parse(new_lines[2])["audit_seq"] == 6);
  // Dropping the continuation line is seen.
  new_lines.erase(new_lines.begin());
  CHECK(verify_audit_text(text_of(new_lines)).text().rfind("line 1: removed", 0) == 0);
  // A missing file is a fresh chain; an unchained one cannot be continued.
  AuditChain fresh;
  REQUIRE(AuditChain::resume(dir.file("none"), &fresh).ok());
  CHECK(fresh.next_seq() == 1);
  std::ofstream(dir.file("old")) << "{\"type\":\"decision\"}\n";
  CHECK(AuditChain::resume(dir.file("old"), &fresh).code == Status::kBadInput);
}

TEST_CASE("verify_audit reads the file, a missing one is kNotFound", "[auth][audit]") {
  smws::test::TempDir dir;
  AuditChain chain;
  std::ofstream(dir.file("a")) << text_of(chained(2, &chain));
  AuditVerdict v;
  REQUIRE(verify_audit(dir.file("a"), &v).ok());
  CHECK(v.text() == "intact, 2 records");
  CHECK(verify_audit(dir.file("missing"), &v).code == Status::kNotFound);
}
