// dist::world(): MPI_COMM_WORLD in a build with MPI started by mpirun, the
// group of one otherwise.
#include <climits>
#include <cstdlib>
#include <mutex>

#include "dist/communicator.h"
#include "tensor/error.h"
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

int launched_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* value = std::getenv(name)) {
      char* end = nullptr;
      const long size = std::strtol(value, &end, 10);
      if (end != value && *end == '\0' && size > 1 && size <= INT_MAX) return static_cast<int>(size);
    }
  return 1;
}

#ifdef MOEGRAD_WITH_MPI
namespace {
// True when a launcher (OpenMPI's mpirun, or a PMI/PMIx one) started this process as a rank.
bool started_as_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(name)) return true;
  return false;
}
}  // namespace
#endif

CommPtr world() {
  // MPI may be initialised once per process: every caller shares one
  // communicator, kept until the process exits (MPI is finalised then)
  static std::mutex mutex;
  static CommPtr shared;
  std::lock_guard<std::mutex> lock(mutex);
#ifdef MOEGRAD_WITH_MPI
  if (!shared && started_as_rank()) shared = std::make_shared<MpiCommunicator>();
#else
  MG_CHECK(launched_world_size() == 1, "this process is one of ", launched_world_size(),
           " that a launcher started, but moegrad was built without MPI (configure with -DMOEGRAD_MPI=ON)");
#endif
  if (!shared) shared = std::make_shared<SingleProcessCommunicator>();
  return shared;
}

}  // namespace moegrad::dist
