# The CPU matrix-product library behind tensor/cpu_gemm.cpp, chosen at
# configure time by MOEGRAD_BLAS:
#   AUTO      OpenBLAS (through its CBLAS interface) when found, else Eigen
#   openblas  OpenBLAS, an error when it is missing
#   blis      BLIS's CBLAS interface, an error when it is missing
#   eigen     Eigen's own products (always there: Eigen is required anyway)
# Debian installs OpenBLAS and BLIS in several builds side by side (openmp,
# pthread, serial); the OpenMP ones are searched first, so that the library's
# threads are moegrad's OpenMP threads (tools/setup.sh installs
# libopenblas-openmp-dev). Sets MOEGRAD_BLAS_NAME and, for a CBLAS library,
# MOEGRAD_BLAS_INCLUDE_DIR and MOEGRAD_BLAS_LIBRARY.
set(MOEGRAD_BLAS AUTO CACHE STRING "CPU matrix products: AUTO (OpenBLAS where found, else Eigen), openblas, blis or eigen")
set_property(CACHE MOEGRAD_BLAS PROPERTY STRINGS AUTO openblas blis eigen)
if(NOT MOEGRAD_BLAS MATCHES "^(AUTO|openblas|blis|eigen)$")
  message(FATAL_ERROR "MOEGRAD_BLAS must be AUTO, openblas, blis or eigen, got '${MOEGRAD_BLAS}'")
endif()

# Finds cblas.h and the library `name` in the first of the Debian build
# folders `variants` that has both (or in the plain folders); sets
# MOEGRAD_BLAS_INCLUDE_DIR and MOEGRAD_BLAS_LIBRARY, empty when not found.
function(moegrad_find_cblas name)
  set(variants ${ARGN})
  foreach(dir ${variants} "")
    find_path(include_dir cblas.h PATH_SUFFIXES ${dir} NO_CACHE)
    find_library(library ${name} PATH_SUFFIXES ${dir} NO_CACHE)
    if(include_dir AND library)
      set(MOEGRAD_BLAS_INCLUDE_DIR ${include_dir} PARENT_SCOPE)
      set(MOEGRAD_BLAS_LIBRARY ${library} PARENT_SCOPE)
      return()
    endif()
    unset(include_dir)
    unset(library)
  endforeach()
  set(MOEGRAD_BLAS_INCLUDE_DIR "" PARENT_SCOPE)
  set(MOEGRAD_BLAS_LIBRARY "" PARENT_SCOPE)
endfunction()

set(MOEGRAD_BLAS_NAME eigen)
if(MOEGRAD_BLAS STREQUAL "AUTO" OR MOEGRAD_BLAS STREQUAL "openblas")
  moegrad_find_cblas(openblas openblas-openmp openblas-pthread openblas-serial openblas)
  if(MOEGRAD_BLAS_LIBRARY)
    set(MOEGRAD_BLAS_NAME openblas)
  elseif(MOEGRAD_BLAS STREQUAL "openblas")
    message(FATAL_ERROR "MOEGRAD_BLAS=openblas but OpenBLAS (cblas.h, libopenblas) was not found: "
                        "install libopenblas-openmp-dev (tools/setup.sh) or configure with -DMOEGRAD_BLAS=eigen")
  endif()
elseif(MOEGRAD_BLAS STREQUAL "blis")
  moegrad_find_cblas(blis blis-openmp blis-pthread blis-serial blis)
  if(NOT MOEGRAD_BLAS_LIBRARY)
    message(FATAL_ERROR "MOEGRAD_BLAS=blis but BLIS (cblas.h, libblis) was not found: "
                        "install libblis-openmp-dev or configure with -DMOEGRAD_BLAS=eigen")
  endif()
  set(MOEGRAD_BLAS_NAME blis)
endif()

if(MOEGRAD_BLAS_NAME STREQUAL "eigen")
  message(STATUS "moegrad: CPU matrix products through Eigen (MOEGRAD_BLAS=${MOEGRAD_BLAS})")
else()
  message(STATUS "moegrad: CPU matrix products through ${MOEGRAD_BLAS_NAME}: ${MOEGRAD_BLAS_LIBRARY} "
                 "(cblas.h from ${MOEGRAD_BLAS_INCLUDE_DIR}; MOEGRAD_BLAS=${MOEGRAD_BLAS})")
endif()
