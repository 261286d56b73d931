# SPDX-License-Identifier: Apache-2.0
# What `make install` and `make deb` put where (SPEC "Installing and running
# as a service"; docs/running-as-a-service.md). The binaries are installed by
# smws_add_tool(); the rest is here. Prefix-dependent files (the unit, its
# script, /etc/default/smws-relay, smws-probe.service and /etc/smws/probe.json)
# and the gzipped man pages are made at
# install time by InstallService.cmake.
install(DIRECTORY completions/bash/ DESTINATION share/bash-completion/completions)
install(DIRECTORY completions/zsh/ DESTINATION share/zsh/vendor-completions)
install(DIRECTORY completions/fish/ DESTINATION share/fish/vendor_completions.d)
install(FILES README.md DESTINATION share/doc/smws)
install(DIRECTORY docs/ DESTINATION share/doc/smws FILES_MATCHING PATTERN "*.md" PATTERN man EXCLUDE)
# The Prometheus alerting rules (and their promtool tests) and the Grafana
# dashboard docs/monitoring.md tells how to load.
install(DIRECTORY docs/monitoring/ DESTINATION share/doc/smws/monitoring
        FILES_MATCHING PATTERN "*.yml" PATTERN "*.json")
install(CODE "
  set(SMWS_SOURCE_DIR \"${CMAKE_SOURCE_DIR}\")
  set(SMWS_STAGE_DIR \"${CMAKE_BINARY_DIR}/install-stage\")
  include(\"${CMAKE_CURRENT_LIST_DIR}/InstallService.cmake\")")
# Debian's place for the reasons behind lintian overrides (in the file).
install(FILES packaging/lintian-overrides DESTINATION share/lintian/overrides RENAME smws)

# The Debian package: `make deb` (cpack -G DEB in the release tree).
# The project's role address (the maintainers as a group, never one person's);
# packaging/copyright's Upstream-Contact and packaging/changelog name it too.
set(SMWS_DEB_MAINTAINER "smws maintainers <maintainers@smws.invalid>"
    CACHE STRING "Maintainer field of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME smws)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${SMWS_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "state-machine events to WebSocket clients, from the shell")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "Small composable tools: sm-send sends an event datagram from a shell script
(and can wait for a human's decision), sm-listen prints the datagrams as
NDJSON, ws-relay broadcasts NDJSON to WebSocket clients with a live dashboard
and human-in-the-loop approvals, ws-probe diagnoses why a WebSocket
connection drops, and hitl-approve answers approval requests from a terminal.
.
The smws-relay systemd unit runs sm-listen | ws-relay as user smws; the
smws-probe unit runs ws-probe --serve, WebSocket checks for Prometheus.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies come from the binaries (dpkg-shlibdeps); adduser is
# for postinst, which creates the smws user.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/conffiles ${CMAKE_SOURCE_DIR}/packaging/postinst
  ${CMAKE_SOURCE_DIR}/packaging/prerm ${CMAKE_SOURCE_DIR}/packaging/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# DESTDIR staging with CMAKE_INSTALL_PREFIX=/usr, so InstallService.cmake
# sees the real prefix and /etc/default lands in /etc.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
include(CPack)
