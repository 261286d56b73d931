// SPDX-License-Identifier: Apache-2.0
// The frame codec, both roles: the first input byte picks the role and the
// chunk size the rest (the wire) is fed in; every text or binary message
// decoded must encode and decode back to the same payload.
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <string>

#include "smws/ws_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace smws::ws;
  const Role role = (data[0] & 1) ? Role::kServer : Role::kClient;
  const size_t chunk = 1 + (data[0] >> 1);
  FrameReader reader(role, 4096);
  Message m;
  for (size_t pos = 1; pos < size; pos += chunk) {
    size_t n = std::min(chunk, size - pos);
    reader.feed(reinterpret_cast<const char*>(data + pos), n);
    FrameReader::Status status;
    while ((status = reader.next(&m)) == FrameReader::Status::kMessage) {
      if (m.opcode == Opcode::kText || m.opcode == Opcode::kBinary) {
        // Re-encoding a decoded message must decode to the same payload.
        FrameReader again(Role::kClient, 4096);
        again.feed(encode_frame(m.opcode, m.payload));
        Message back;
        if (again.next(&back) != FrameReader::Status::kMessage || back.payload != m.payload) __builtin_trap();
      }
    }
    if (status == FrameReader::Status::kError) break;
  }
  return 0;
}
