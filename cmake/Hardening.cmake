# SPDX-License-Identifier: Apache-2.0
# The optimised build (make release, make deb) gets the hardening Debian
# builds its own packages with (dpkg-buildflags: fortified libc calls, stack
# protector, read-only relocations bound at start); lintian looks for them.
# Not under the sanitizers, which replace those checks, nor in Debug builds,
# where _FORTIFY_SOURCE does nothing without optimisation.
if(NOT SMWS_SANITIZE AND CMAKE_BUILD_TYPE MATCHES "^(Release|RelWithDebInfo|MinSizeRel)$")
  add_compile_options(-U_FORTIFY_SOURCE -D_FORTIFY_SOURCE=2 -fstack-protector-strong
                      -fstack-clash-protection)
  add_link_options(-Wl,-z,relro -Wl,-z,now)
endif()
