#include "smws/prometheus.h"

#include <cstdio>

namespace smws {

void PrometheusText::add(std::string_view name, std::string_view type, std::string_view help,
                         double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  out_.append(name).append(" ").append(buf).append("\n");
}

}  // namespace smws
