// SPDX-License-Identifier: Apache-2.0
// --users FILE (auth/users_file.h): the line grammar, every bad line named,
// duplicates refused, constant-time lookup by hash, --new-token, and which
// names a SIGHUP revokes.
#include <catch2/catch.hpp>

#include <fstream>

#include "smws/auth/users_file.h"
#include "support.h"

using namespace smws::auth;
using smws::Status;

namespace {

std::string hash_of(const std::string& token) {
  const Sha256 h = sha256(token);
  return "sha256:" + hex(h.data(), h.size());
}

UsersFile parse_ok(const std::string& text) {
  UsersFile f;
  Status st = UsersFile::parse(text, "users", &f);
  INFO(st.message);
  REQUIRE(st.ok());
  return f;
}

}  // namespace

TEST_CASE("a users file names each person, their groups and their token's hash", "[auth][users]") {
  UsersFile f = parse_ok("# people allowed in\n"
                         "\n"
                         "alice approvers,ops " + hash_of("tok-alice") + "   # the on-call\n"
                         "bob\tviewers\t" + hash_of("tok-bob") + "\r\n"
                         "carol - " + hash_of("tok-carol") + "\n");
  REQUIRE(f.size() == 3);
  auto alice = f.lookup("tok-alice");
  REQUIRE(alice);
  CHECK(alice->name == "alice");
  CHECK(alice->groups == std::vector<std::string>{"approvers", "ops"});
  CHECK(alice->via == "users");
  CHECK_FALSE(alice->expires_at);
  CHECK(f.lookup("tok-bob")->name == "bob");
  CHECK(f.lookup("tok-carol")->groups.empty());
  CHECK_FALSE(f.lookup("tok-mallory"));
  CHECK_FALSE(f.lookup(""));
  CHECK(f.find("bob")->line == 4);
}

TEST_CASE("the hash may be upper-case hex, and the last line may lack its newline", "[auth][users]") {
  std::string h = hash_of("t");
  for (auto& c : h) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  h.replace(0, 7, "sha256:");
  CHECK(parse_ok("dave ops " + h).lookup("t")->name == "dave");
}

TEST_CASE("every bad line is named with file:line and why, and the file is refused", "[auth][users]") {
  UsersFile f;
  const std::string good = hash_of("x");
  Status st = UsersFile::parse("alice ops " + good + "\n"
                               "bob ops\n"                                  // 2: two fields
                               "carol ops tok-in-clear\n"                   // 3: not sha256:
                               "dave ops sha256:abcd\n"                     // 4: short hash
                               "@erin ops " + good + "\n"                   // 5: leading @
                               "frank ops,,x " + good + "\n"                // 6: empty group
                               "gina o/ps " + good + "\n"                   // 7: bad group char
                               "alice ops " + good + "\n"                   // 8: duplicate
                               "h\xc3\xa9 ops " + good + "\n"               // 9: non-ASCII name
                               "ivan ops sha256:" + std::string(64, 'g') + "\n",  // 10: not hex
                               "team.users", &f);
  CHECK(st.code == Status::kBadInput);
  CHECK(st.message ==
        "team.users:2: expected NAME GROUP[,GROUP...] sha256:HEX, found 2 fields\n"
        "team.users:3: the third field must be sha256:HEX (the SHA-256 of the token, never the token)\n"
        "team.users:4: sha256: needs exactly 64 hex digits, found 4 characters\n"
        "team.users:5: user name \"@erin\" starts with @ (--approvers @NAME would be ambiguous)\n"
        "team.users:6: groups \"ops,,x\": an empty group (two commas, or one at an end); use - for none\n"
        "team.users:7: group \"o/ps\" may hold only letters, digits and . _ : -\n"
        "team.users:8: user alice is already on line 1 (one line per person)\n"
        "team.users:9: user name \"h??\" may hold only letters, digits and . _ @ + -\n"
        "team.users:10: sha256: holds a character that is not a hex digit");
  CHECK(f.empty());
}

TEST_CASE("no message about a bad line repeats the token-like third field", "[auth][users]") {
  UsersFile f;
  Status st = UsersFile::parse("alice ops s3cr3t-token-value\n", "u", &f);
  CHECK_FALSE(st.ok());
  CHECK(st.message.find("s3cr3t") == std::string::npos);
}

TEST_CASE("a missing users file is kNotFound naming it", "[auth][users]") {
  UsersFile f;
  Status st = UsersFile::load("/nonexistent/users", &f);
  CHECK(st.code == Status::kNotFound);
  CHECK(st.message.find("users file /nonexistent/users: ") == 0);
}

TEST_CASE("new_token makes a 256-bit base64url token whose line the file accepts", "[auth][users]") {
  smws::test::TempDir dir;
  NewToken a, b;
  REQUIRE(new_token("alice", "approvers,ops", &a).ok());
  REQUIRE(new_token("alice", "approvers,ops", &b).ok());
  CHECK(a.token != b.token);
  CHECK(a.token.size() == 43);  // 32 bytes
  CHECK(a.token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
        std::string::npos);
  CHECK(a.line == "alice approvers,ops " + hash_of(a.token));
  CHECK(a.line.find(a.token) == std::string::npos);
  std::ofstream(dir.file("users")) << a.line << "\n";
  UsersFile f;
  REQUIRE(UsersFile::load(dir.file("users"), &f).ok());
  CHECK(f.lookup(a.token)->name == "alice");
  CHECK_FALSE(f.lookup(b.token));

  NewToken none;
  REQUIRE(new_token("viewer1", "-", &none).ok());
  CHECK(none.line.rfind("viewer1 - sha256:", 0) == 0);
  CHECK(new_token("bad name", "ops", &none).code == Status::kUsage);
  CHECK(new_token("bob", "ops,", &none).code == Status::kUsage);
}

TEST_CASE("a SIGHUP revokes the names removed or changed, not the others", "[auth][users]") {
  UsersFile before = parse_ok("alice ops " + hash_of("a") + "\nbob ops " + hash_of("b") + "\ncarol ops " +
                              hash_of("c") + "\ndave ops " + hash_of("d") + "\n");
  UsersFile after = parse_ok("alice ops " + hash_of("a") + "\n"      // same
                             "bob ops,approvers " + hash_of("b") + "\n"  // groups changed
                             "carol ops " + hash_of("c2") + "\n"    // new token
                             "erin ops " + hash_of("e") + "\n");    // dave removed, erin new
  CHECK(revoked_names(before, after) == std::vector<std::string>{"bob", "carol", "dave"});
  CHECK(revoked_names(after, after).empty());
}
