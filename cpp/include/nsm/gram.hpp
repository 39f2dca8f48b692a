#pragma once
// Streaming accumulation of the Gram matrix G = A^T A of A = [X Y] (docs/method.md, "Gram pass").

#include <Eigen/Core>

#include <cstdint>
#include <mutex>
#include <string>

#include "nsm/dense.hpp"
#include "nsm/interrupt.hpp"

namespace nsm {

using Index = Eigen::Index;

/// A read-only 2-D array of T with arbitrary element strides (in elements, may be any sign
/// but must address valid memory): element (i, j) is data[i * row_stride + j * col_stride].
/// With inner > 0 the rows come in groups of `inner` (a channels-first activation tensor
/// (N, C, P) read as N * P samples of C neurons, without a copy): element (i, j) is
/// data[(i / inner) * outer_stride + (i % inner) * row_stride + j * col_stride].
template <class T>
struct MatrixView {
  const T* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index row_stride = 0;
  Index col_stride = 0;
  Index inner = 0;
  Index outer_stride = 0;

  const T* row_start(Index i) const {
    if (inner > 0) return data + (i / inner) * outer_stride + (i % inner) * row_stride;
    return data + i * row_stride;
  }
  const T& operator()(Index i, Index j) const { return row_start(i)[j * col_stride]; }
};

/// A consistent copy of an accumulator's state.
struct GramState {
  Eigen::MatrixXd matrix;  // full symmetric n x n
  Eigen::VectorXd sums;
  std::int64_t n_samples = 0;
};

/// How a block's products are computed. float64: each value converted to float64 and multiplied
/// in float64. mixed: float32 input multiplied in float32 over blocks of mixed_block_rows() rows
/// (the block length bounds the rounding), each block's products added into the float64 Gram;
/// input with a float64 layer always takes the float64 pass. Accuracy: bench/bench_gram_precision.py.
enum class Precision { float64, mixed };

/// Rows per float32 block of the mixed pass (default kDefaultMixedRows, fewer when a block would
/// pass 16 MiB); the setter is for the accuracy study.
constexpr Index kDefaultMixedRows = 2048;
/// A float32 batch takes the mixed pass only when its largest |value| lies strictly between
/// these (its float32 products neither overflow nor lose the small neurons to underflow);
/// others take the float64 pass.
constexpr double kMixedMaxAbs = 1e15;
constexpr double kMixedMinAbs = 1e-5;
Index mixed_block_rows();
void set_mixed_block_rows(Index rows);

/// Float64 accumulator of G = [X Y]^T [X Y] and of the column sums, updated block by block.
/// Memory: the n x n matrix plus one row block of at most `block_bytes` (16 MiB by default).
/// Thread-safe: updates, merges and reads from several threads are serialized by a mutex, so
/// concurrent updates give what the same updates give one after another (up to the order of
/// the floating-point sums) and a reader sees the state between two whole updates.
class GramAccumulator {
 public:
  GramAccumulator(Index n_x, Index n_y);

  /// Adds the rows of x (rows x n_x) and y (rows x n_y), which must have the same number of
  /// rows. Throws std::invalid_argument if shapes disagree, a value is NaN or Inf, its squares
  /// would overflow float64 in the Gram, or an array's largest |value| is so small (below
  /// tiny_limit()) that its squares would underflow (the accumulator is then unchanged).
  /// Converts to float64 one row block at a time.
  /// `precision`: see Precision. `should_stop` is asked between row blocks, at most every
  /// 50 ms: when it says stop, the update throws Interrupted and the accumulator is unchanged
  /// (an update of several blocks keeps a copy of the lower triangle to restore).
  template <class TX, class TY>
  void update(const MatrixView<TX>& x, const MatrixView<TY>& y, int num_threads,
              Precision precision = Precision::float64, const StopCheck& should_stop = {});

  /// Adds another accumulator over disjoint samples (a distributed run's reduction). Throws
  /// std::invalid_argument (this accumulator unchanged) if the sum overflows float64.
  void merge(const GramAccumulator& other);

  /// Replaces the state (used to rebuild an accumulator from saved parts).
  void assign(const Eigen::MatrixXd& gram, const Eigen::VectorXd& sums, std::int64_t n_samples);

  /// The full symmetric n x n Gram matrix.
  Eigen::MatrixXd matrix() const;
  Eigen::VectorXd column_sums() const;
  std::int64_t n_samples() const;
  /// Matrix, column sums and sample count taken together (no update in between).
  GramState state() const;
  Index n_x() const { return n_x_; }
  Index n_y() const { return n_y_; }

  /// Rows per block for n neurons: about 16 MiB of float64.
  static Index block_rows(Index n);

  /// The smallest largest-|value| an update takes: sqrt(smallest normal double) / eps_machine
  /// (about 6.7e-139), so that products down to eps_machine of the largest stay normal numbers.
  static double tiny_limit();

 private:
  void check_magnitudes(double max_abs_x, double max_abs_y, Index rows) const;

  // The mixed pass's body; the caller holds mutex_ and has checked the values.
  void add_mixed(const MatrixView<float>& x, const MatrixView<float>& y, int num_threads,
                 StopPoll& stop);

  // Runs body(r0, nr) over the blocks of `rows` rows, polling `stop` between blocks; if it
  // throws Interrupted, restores the matrix and sums first. The caller holds mutex_.
  template <class Body>
  void add_blocks(Index rows, Index rows_per_block, StopPoll& stop, Body&& body);

  mutable std::mutex mutex_;
  Index n_x_;
  Index n_y_;
  Eigen::MatrixXd lower_;  // only the lower triangle is meaningful
  Eigen::VectorXd sums_;
  std::int64_t n_samples_ = 0;
};

}  // namespace nsm
