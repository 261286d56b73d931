// SPDX-License-Identifier: Apache-2.0
// PrometheusText: the /metrics exposition format.
#include <catch2/catch.hpp>

#include "smws/prometheus.h"

TEST_CASE("each metric is HELP, TYPE and one sample line", "[prometheus]") {
  smws::PrometheusText out;
  out.gauge("ws_relay_clients", "Connected WebSocket clients.", 3);
  out.counter("ws_relay_events_in_total", "Valid events read from stdin.", 12345678901234.0);
  CHECK(out.text() ==
        "# HELP ws_relay_clients Connected WebSocket clients.\n"
        "# TYPE ws_relay_clients gauge\n"
        "ws_relay_clients 3\n"
        "# HELP ws_relay_events_in_total Valid events read from stdin.\n"
        "# TYPE ws_relay_events_in_total counter\n"
        "ws_relay_events_in_total 12345678901234\n");
}

TEST_CASE("fractional values keep their digits", "[prometheus]") {
  smws::PrometheusText out;
  out.gauge("up", "Seconds.", 1.5);
  CHECK(out.text().find("\nup 1.5\n") != std::string::npos);
}

TEST_CASE("a labelled counter has a sample per label value, escaped", "[prometheus]") {
  smws::PrometheusText out;
  out.counter("ws_relay_http_requests_total", "HTTP requests by status.", "status",
              {{"101", 2}, {"403", 1}, {"a\"b\\c\nd", 3}});
  CHECK(out.text() ==
        "# HELP ws_relay_http_requests_total HTTP requests by status.\n"
        "# TYPE ws_relay_http_requests_total counter\n"
        "ws_relay_http_requests_total{status=\"101\"} 2\n"
        "ws_relay_http_requests_total{status=\"403\"} 1\n"
        "ws_relay_http_requests_total{status=\"a\\\"b\\\\c\\nd\"} 3\n");
}
