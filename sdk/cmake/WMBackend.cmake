# SPDX-License-Identifier: MIT
# wm_add_backend(<name> SOURCES <src>... [LINK_LIBRARIES <lib>...] [OUTPUT_DIRECTORY <dir>]
#                [INSTALL_DIR <dir>] [NO_INSTALL])
#
# Builds a work-manager backend plugin the way the core expects it: a MODULE library named
# wm_backend_<name>.so with hidden visibility, every symbol resolved at link time
# (-Wl,--no-undefined), linked against the SDK only. The project's own backends use this
# function exactly as a third party would.
#
# Installed (unless NO_INSTALL) into INSTALL_DIR, else WM_PLUGIN_INSTALL_DIR: after find_package(wm)
# that is the absolute plugin directory of the wm found, so `cmake --install` puts the plugin where
# that wm looks, whatever this project's install prefix. Without a build type the plugin is still
# built optimised (-O2): a backend is on the path of every task.
function(wm_add_backend name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY;INSTALL_DIR" "SOURCES;LINK_LIBRARIES" ${ARGN})
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "wm_add_backend(${name}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "wm_add_backend(${name}): SOURCES is required")
  endif()
  if(NOT name MATCHES "^[a-z0-9_]+$")
    message(FATAL_ERROR "wm_add_backend(${name}): backend names use only a-z, 0-9 and '_'")
  endif()
  set(target wm_backend_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE WM::sdk ${ARG_LINK_LIBRARIES})
  target_compile_features(${target} PRIVATE cxx_std_17)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
    target_compile_options(${target} PRIVATE -O2)
  endif()
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${target}
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${ARG_OUTPUT_DIRECTORY})
  elseif(WM_BACKEND_DEFAULT_OUTPUT_DIRECTORY)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${WM_BACKEND_DEFAULT_OUTPUT_DIRECTORY})
  endif()
  set(install_dir ${ARG_INSTALL_DIR})
  if(NOT install_dir)
    set(install_dir ${WM_PLUGIN_INSTALL_DIR})
  endif()
  if(NOT ARG_NO_INSTALL)
    if(NOT install_dir)
      message(FATAL_ERROR "wm_add_backend(${name}): no install directory: call find_package(wm) first, "
                          "pass INSTALL_DIR, or NO_INSTALL")
    endif()
    install(TARGETS ${target} LIBRARY DESTINATION ${install_dir})
  endif()
endfunction()
