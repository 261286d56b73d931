# SPDX-License-Identifier: Apache-2.0
# Runs at install time (cmake --install, make install, cpack): the files whose
# text or place depends on the install prefix, known only then (make install
# PREFIX=... and the .deb's /usr share one build tree).
#   prefix /usr (the package):  /etc/default, /etc/smws, /lib/systemd/system (Debian 12)
#   any other prefix:           PREFIX/etc/default, PREFIX/etc/smws, PREFIX/lib/systemd/system
#                               (systemd also reads /usr/local/lib/systemd/system)
# Also gzips the man pages (-n: no name or time stamp, so builds are
# reproducible). Set before this runs: SMWS_SOURCE_DIR, SMWS_STAGE_DIR.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "/usr")
  set(sysconfdir /etc)
  set(unitdir /lib/systemd/system)
else()
  set(sysconfdir "${prefix}/etc")
  set(unitdir "${prefix}/lib/systemd/system")
endif()
set(libexecdir "${prefix}/libexec/smws")
set(SMWS_DOCDIR "${prefix}/share/doc/smws")
set(SMWS_DEFAULTS_FILE "${sysconfdir}/default/smws-relay")
set(SMWS_RUN_SCRIPT "${libexecdir}/smws-relay-run")
set(SMWS_BINDIR "${prefix}/bin")
set(SMWS_PROBE_CONFIG "${sysconfdir}/smws/probe.json")
file(RELATIVE_PATH SMWS_LIBEXEC_TO_BIN "${libexecdir}" "${prefix}/bin")

set(stage "${SMWS_STAGE_DIR}")
file(MAKE_DIRECTORY "${stage}/man")
configure_file("${SMWS_SOURCE_DIR}/packaging/smws-relay.service.in" "${stage}/smws-relay.service" @ONLY)
configure_file("${SMWS_SOURCE_DIR}/packaging/smws-relay-run.in" "${stage}/smws-relay-run" @ONLY)
configure_file("${SMWS_SOURCE_DIR}/packaging/smws-probe.service.in" "${stage}/smws-probe.service" @ONLY)

file(GLOB pages "${SMWS_SOURCE_DIR}/docs/man/*.1")
set(gzipped "")
foreach(page ${pages})
  get_filename_component(name "${page}" NAME)
  execute_process(COMMAND gzip -9nc "${page}" OUTPUT_FILE "${stage}/man/${name}.gz"
                  RESULT_VARIABLE failed)
  if(failed)
    message(FATAL_ERROR "gzip ${page} failed")
  endif()
  list(APPEND gzipped "${stage}/man/${name}.gz")
endforeach()
execute_process(COMMAND gzip -9nc "${SMWS_SOURCE_DIR}/packaging/changelog"
                OUTPUT_FILE "${stage}/changelog.gz" RESULT_VARIABLE failed)
if(failed)
  message(FATAL_ERROR "gzip changelog failed")
endif()

set(rw_r_r OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
set(rwx_rx_rx OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
file(INSTALL ${gzipped} DESTINATION "${prefix}/share/man/man1" FILE_PERMISSIONS ${rw_r_r})
file(INSTALL "${stage}/changelog.gz" "${SMWS_SOURCE_DIR}/packaging/copyright"
     DESTINATION "${SMWS_DOCDIR}" FILE_PERMISSIONS ${rw_r_r})
file(INSTALL "${stage}/smws-relay.service" "${stage}/smws-probe.service" DESTINATION "${unitdir}"
     FILE_PERMISSIONS ${rw_r_r})
# ws-probe --serve's modules and allow_targets (docs/monitoring.md): no
# secret in it (a module names a token_file instead), so 0644.
file(INSTALL "${SMWS_SOURCE_DIR}/packaging/probe.json" DESTINATION "${sysconfdir}/smws" FILE_PERMISSIONS ${rw_r_r})
file(INSTALL "${stage}/smws-relay-run" DESTINATION "${libexecdir}" FILE_PERMISSIONS ${rwx_rx_rx})
# 0600: the operator may put the token here; systemd reads it as root.
file(INSTALL "${SMWS_SOURCE_DIR}/packaging/smws-relay.default" DESTINATION "${sysconfdir}/default"
     RENAME smws-relay FILE_PERMISSIONS OWNER_READ OWNER_WRITE)
