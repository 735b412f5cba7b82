// The AC weight options the tests run every AC check under: each statistic
// (MAD, variance) with each scaling (per feature, global) and clip (10, 1.3
// with a large eps, none). Shared by the op table and the AC weights' tests.
#pragma once
#include <vector>

#include "moe/ac_weights.h"

namespace moegrad::testing {

inline std::vector<ACOptions> ac_variants() {
  std::vector<ACOptions> out;
  for (ACStat st : {ACStat::MAD, ACStat::Variance})
    for (ACScaling sc : {ACScaling::PerFeature, ACScaling::Global})
      for (double clip : {10.0, 1.3, 0.0}) {
        ACOptions o;
        o.stat = st, o.scaling = sc, o.clip = clip, o.eps = clip == 1.3 ? 0.35 : 1e-4;
        out.push_back(o);
      }
  return out;
}

}  // namespace moegrad::testing
