# beam_dependency(<package> <target> <debian package> <git repository> <git tag>)
#
# Test and benchmark dependencies: the system package first (find_package CONFIG), then a
# FetchContent download of a pinned release for users who are online.
include_guard(GLOBAL)
include(FetchContent)

function(beam_dependency package target debian_package repository tag)
  if(TARGET ${target})
    return()
  endif()
  find_package(${package} CONFIG QUIET)
  if(${package}_FOUND)
    return()
  endif()
  message(STATUS "beam: ${package} not installed (Debian/Ubuntu: apt-get install ${debian_package}); "
                 "fetching ${repository} ${tag}")
  FetchContent_Declare(${package} GIT_REPOSITORY ${repository} GIT_TAG ${tag} GIT_SHALLOW TRUE)
  FetchContent_MakeAvailable(${package})
endfunction()
