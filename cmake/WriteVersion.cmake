# SPDX-License-Identifier: Apache-2.0
# cmake -DSOURCE_DIR=... -DBASE=... -DIN=version.h.in -DOUT=version.h -P WriteVersion.cmake
# Run by the smws_version target at every build: a commit or an edit since
# the last configure changes the description. configure_file rewrites OUT
# only when its text changes, so an unchanged version recompiles nothing.
include(${CMAKE_CURRENT_LIST_DIR}/SmwsVersion.cmake)
smws_version(SMWS_VERSION "${SOURCE_DIR}" "${BASE}")
configure_file("${IN}" "${OUT}" @ONLY)
