// Data parallelism over a communicator: every rank holds the whole model,
// trains on its own slice of each global batch, and applies the same
// optimizer step to the same averaged gradients, so the parameters stay
// identical on every rank.
//
//   broadcast_parameters(comm, params);        // once, after building or loading
//   loop: each rank forward/backward on local_rows(comm, B) of the global batch
//         average_gradients(comm, params);     // then clip and step as usual
//
// With a loss that is a mean over the batch's tokens (and terms that do not
// couple the sequences of a batch), N ranks with B/N sequences each give the
// gradients of one process with B sequences, up to rounding.
#pragma once
#include <utility>
#include <vector>

#include "dist/communicator.h"

namespace moegrad::dist {

// Every rank's parameters (in place) become rank 0's.
void broadcast_parameters(Communicator& comm, const std::vector<Tensor>& params);
// Each parameter's gradient becomes the mean of that gradient over the ranks
// (one all_reduce_sum of all of them). A gradient that is undefined on some
// ranks counts as zeros there; undefined on every rank, it stays undefined
// (the optimizer skips the parameter, as it would in one process).
void average_gradients(Communicator& comm, const std::vector<Tensor>& params);
// The mean of value over the ranks (a loss for logging).
double average_over_ranks(Communicator& comm, double value);
// (first row, rows) of this rank's slice of a global batch of global_rows:
// rank r takes rows [r B/N, (r + 1) B/N). Error naming both numbers unless
// the world size divides global_rows.
std::pair<int64_t, int64_t> local_rows(const Communicator& comm, int64_t global_rows, const char* what);

}  // namespace moegrad::dist
