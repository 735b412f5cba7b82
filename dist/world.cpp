// dist::world(): MPI_COMM_WORLD in a build with MPI, the group of one otherwise.
#include <mutex>

#include "dist/communicator.h"
#ifdef MOEGRAD_WITH_MPI
#include "dist/mpi_communicator.h"
#endif

namespace moegrad::dist {

bool built_with_mpi() {
#ifdef MOEGRAD_WITH_MPI
  return true;
#else
  return false;
#endif
}

CommPtr world() {
  // MPI may be initialised once per process: every caller shares one
  // communicator, kept until the process exits (MPI is finalised then)
  static std::mutex mutex;
  static CommPtr shared;
  std::lock_guard<std::mutex> lock(mutex);
#ifdef MOEGRAD_WITH_MPI
  if (!shared) shared = std::make_shared<MpiCommunicator>();
#else
  if (!shared) shared = std::make_shared<SingleProcessCommunicator>();
#endif
  return shared;
}

}  // namespace moegrad::dist
