// moegrad: one include for the whole library.
#pragma once
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
