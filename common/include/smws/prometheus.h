// SPDX-License-Identifier: Apache-2.0
// Prometheus text exposition format (version 0.0.4) for /metrics: one
// "# HELP", one "# TYPE" and one sample line per metric, or for a counter
// with one label, a sample per label value (HTTP requests by status,
// refusals by reason). https://prometheus.io/docs/instrumenting/exposition_formats/
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace smws {

class PrometheusText {
 public:
  // What to send as the reply's Content-Type.
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

  // name: [a-zA-Z_:][a-zA-Z0-9_:]* (counters end in _total); help: one line.
  // The value is printed with 17 significant digits, so a uint64 counter up
  // to 2^53 is exact.
  void gauge(std::string_view name, std::string_view help, double value) {
    add(name, "gauge", help, value);
  }
  void counter(std::string_view name, std::string_view help, double value) {
    add(name, "counter", help, value);
  }

  // A counter with one label: `name{label="value"} N` per sample, in the
  // order given (none: only HELP and TYPE). Values are escaped (\\, \", \n).
  using Samples = std::vector<std::pair<std::string, double>>;
  void counter(std::string_view name, std::string_view help, std::string_view label,
               const Samples& samples);
  // A gauge with one label, the same way.
  void gauge(std::string_view name, std::string_view help, std::string_view label, const Samples& samples);

  const std::string& text() const { return out_; }

 private:
  void add(std::string_view name, std::string_view type, std::string_view help, double value);
  void head(std::string_view name, std::string_view type, std::string_view help);
  void labeled(std::string_view name, std::string_view type, std::string_view help, std::string_view label,
               const Samples& samples);
  std::string out_;
};

}  // namespace smws
