# wm_add_backend(<name> SOURCES <src>... [OUTPUT_DIRECTORY <dir>] [LINK_LIBRARIES <lib>...] [NO_INSTALL])
#
# Builds a work-manager backend plugin the way the core expects it: a MODULE library named
# wm_backend_<name>.so with hidden visibility, every symbol resolved at link time
# (-Wl,--no-undefined), linked against the SDK only. The project's own backends use this
# function exactly as a third party would.
function(wm_add_backend name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIRECTORY" "SOURCES;LINK_LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "wm_add_backend(${name}): SOURCES is required")
  endif()
  set(target wm_backend_${name})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE WM::sdk ${ARG_LINK_LIBRARIES})
  target_compile_features(${target} PRIVATE cxx_std_17)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
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
  if(NOT ARG_NO_INSTALL AND WM_PLUGIN_INSTALL_DIR)
    install(TARGETS ${target} LIBRARY DESTINATION ${WM_PLUGIN_INSTALL_DIR})
  endif()
endfunction()
