# SPDX-License-Identifier: Apache-2.0
# smws_version(<out-var> <source-dir> <base-version>)
# The version every tool prints with --version: CMake's project version, plus
# the git description as SemVer build metadata when the source is a git
# checkout, so a binary says which commit it was built from:
#   0.1.0                       a source tree without git (a tarball), or the
#                               clean checkout of tag v0.1.0
#   0.1.0+git.9ce800f           a checkout of an untagged commit
#   0.1.0+git.v0.1.0.3.g9ce800f.dirty   three commits after v0.1.0, edited
# Shared by the configure step (cmake/Version.cmake) and the build-time
# refresh (cmake/WriteVersion.cmake), so both write the same header.
function(smws_version out source_dir base)
  set(version "${base}")
  find_program(SMWS_GIT git)
  if(SMWS_GIT AND EXISTS "${source_dir}/.git")
    execute_process(
      # --no-optional-locks: the --dirty check must not take the index lock
      # from a git command someone is running in the same checkout.
      COMMAND "${SMWS_GIT}" --no-optional-locks -C "${source_dir}" describe --always --tags
              --match "v[0-9]*" --dirty=-dirty
      OUTPUT_VARIABLE described RESULT_VARIABLE failed
      OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(NOT failed AND described AND NOT described STREQUAL "v${base}")
      # SemVer build metadata allows [0-9A-Za-z-] separated by dots.
      string(REPLACE "-" "." described "${described}")
      set(version "${base}+git.${described}")
    endif()
  endif()
  set(${out} "${version}" PARENT_SCOPE)
endfunction()
