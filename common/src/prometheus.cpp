// SPDX-License-Identifier: Apache-2.0
#include "smws/prometheus.h"

#include <cstdio>

namespace smws {

namespace {

std::string number(double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  return buf;
}

}  // namespace

void PrometheusText::head(std::string_view name, std::string_view type, std::string_view help) {
  out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void PrometheusText::add(std::string_view name, std::string_view type, std::string_view help,
                         double value) {
  head(name, type, help);
  out_.append(name).append(" ").append(number(value)).append("\n");
}

void PrometheusText::counter(std::string_view name, std::string_view help, std::string_view label,
                             const Samples& samples) {
  labeled(name, "counter", help, label, samples);
}

void PrometheusText::gauge(std::string_view name, std::string_view help, std::string_view label,
                           const Samples& samples) {
  labeled(name, "gauge", help, label, samples);
}

void PrometheusText::labeled(std::string_view name, std::string_view type, std::string_view help,
                             std::string_view label, const Samples& samples) {
  head(name, type, help);
  for (const auto& [value, count] : samples) {
    out_.append(name).append("{").append(label).append("=\"");
    for (char c : value) {
      if (c == '\\' || c == '"') {
        out_ += '\\';
        out_ += c;
      } else if (c == '\n') {
        out_ += "\\n";
      } else {
        out_ += c;
      }
    }
    out_.append("\"} ").append(number(count)).append("\n");
  }
}

}  // namespace smws
