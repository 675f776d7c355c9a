# SPDX-License-Identifier: MIT
# WMPackaging.cmake: what an install carries besides the targets (wm.pc, the license, the changelog)
# and `make package` (CPack: a .deb of the whole install).

# ---- pkg-config ----
# wm.pc names its prefix, which is known only when installing (`cmake --install --prefix P`, or
# CPack's /usr): it is written then, from wm.pc.in with every other value filled in now.
set(WM_PC_PREFIX "@WM_PC_INSTALL_PREFIX@")
configure_file(${CMAKE_CURRENT_LIST_DIR}/wm.pc.in ${CMAKE_BINARY_DIR}/pkgconfig/wm.pc.in @ONLY)
# (Written first to a file of its own per destination: two installs may run at once, e.g. tests.)
install(CODE "
  set(WM_PC_INSTALL_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  string(MD5 _wm_pc_destination \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
  set(_wm_pc \"${CMAKE_BINARY_DIR}/pkgconfig/\${_wm_pc_destination}/wm.pc\")
  configure_file(\"${CMAKE_BINARY_DIR}/pkgconfig/wm.pc.in\" \"\${_wm_pc}\" @ONLY)
  file(INSTALL \"\${_wm_pc}\" DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\")")

# ---- documents ----
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/CHANGELOG.md ${PROJECT_SOURCE_DIR}/README.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR})

# ---- make package: one .deb with the library, headers, CMake and pkg-config files, plugins, tools,
# man page, completion and API reference, installed under /usr ----
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME wm)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "the wm authors")
set(CPACK_PACKAGE_CONTACT "the wm authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
# Debian wraps nothing: one line of the long description per line here.
string(JOIN "\n" CPACK_PACKAGE_DESCRIPTION
  "One C++ interface (submit, as_completed, futures) over backends chosen at run time"
  "(WM_WORK_MANAGER or --work-manager): serial, threads, processes, and mpi and zmq"
  "where they were built."
  "Backends are plugins behind a versioned C ABI. Contains the library, its headers,"
  "the CMake package (find_package(wm)) and wm.pc, the bundled plugins, the plugin"
  "SDK, the wm tool with its man page and completion, and the API reference.")
set(CPACK_RESOURCE_FILE_LICENSE ${PROJECT_SOURCE_DIR}/LICENSE)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/package)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "the wm authors")
# The libraries the binaries and plugins link (found by dpkg-shlibdeps), and what the installed
# headers and CMake package need: Boost and cereal headers, and a compiler to use them with.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${CMAKE_BINARY_DIR}/lib)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libboost-dev (>= 1.74), libcereal-dev (>= 1.3)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cmake, pkg-config, openmpi-bin")
include(CPack)
