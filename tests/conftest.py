# SPDX-License-Identifier: Apache-2.0
"""Marks shared by every test directory."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tsan: also run against the ThreadSanitizer build (make tsan, tests/tsan/run.sh)")
