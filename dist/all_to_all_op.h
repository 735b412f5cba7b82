// The differentiable all-to-all of rows between ranks, the op that expert
// parallelism is built on:
//
//   out = all_to_all_rows(comm, rows, send, recv)   rows [sum(send), ...] -> out [sum(recv), ...]
//
// Its backward is the reverse exchange: the gradient of out's rows goes back
// to the ranks the rows came from, drows = all_to_all(dout, recv, send). One
// op, one node. The backward is collective too: every rank's backward pass
// runs these nodes in the same order, which holds when every rank builds the
// same graph (the same layers, any number of rows, zero included).
#pragma once
#include <vector>

#include "dist/communicator.h"

namespace moegrad::dist {

// recv must be comm->all_to_all_counts(send) (Communicator::all_to_all).
Tensor all_to_all_rows(const CommPtr& comm, const Tensor& rows, const std::vector<int64_t>& send,
                       const std::vector<int64_t>& recv);

}  // namespace moegrad::dist
