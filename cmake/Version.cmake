# SPDX-License-Identifier: Apache-2.0
# The version: one place, project(smws VERSION ...) in CMakeLists.txt.
# Sets SMWS_VERSION for common/'s configure_file of smws/version.h (at
# configure time) and adds the smws_version target that refreshes the same
# header at build time (see SmwsVersion.cmake for the format).
include(${CMAKE_CURRENT_LIST_DIR}/SmwsVersion.cmake)
smws_version(SMWS_VERSION "${CMAKE_SOURCE_DIR}" "${PROJECT_VERSION}")
message(STATUS "smws version ${SMWS_VERSION}")

set(SMWS_VERSION_HEADER ${CMAKE_BINARY_DIR}/common/include/smws/version.h)
add_custom_target(smws_version
  COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${CMAKE_SOURCE_DIR} -DBASE=${PROJECT_VERSION}
          -DIN=${CMAKE_SOURCE_DIR}/common/include/smws/version.h.in -DOUT=${SMWS_VERSION_HEADER}
          -P ${CMAKE_CURRENT_LIST_DIR}/WriteVersion.cmake
  BYPRODUCTS ${SMWS_VERSION_HEADER}
  VERBATIM)
