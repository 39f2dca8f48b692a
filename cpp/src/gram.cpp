#include "nsm/gram.hpp"

#include "thread_scope.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "thread_scope.hpp"

namespace nsm {
namespace {

// Row i's largest |value|, and whether it holds NaN or Inf. Branch-free so that the compiler
// vectorizes it.
template <class T>
T row_max_abs(const MatrixView<T>& a, Index i, unsigned& non_finite) {
  constexpr T largest = std::numeric_limits<T>::max();
  unsigned flag = 0;
  T top = 0;
  const T* row = a.row_start(i);
  if (a.col_stride == 1) {
    for (Index j = 0; j < a.cols; ++j) {
      const T v = std::abs(row[j]);
      flag |= static_cast<unsigned>(!(v <= largest));
      top = v > top ? v : top;
    }
  } else {
    for (Index j = 0; j < a.cols; ++j) {
      const T v = std::abs(row[j * a.col_stride]);
      flag |= static_cast<unsigned>(!(v <= largest));
      top = v > top ? v : top;
    }
  }
  non_finite = flag;
  return top;
}

struct Scan {
  Index bad_row = -1;  // first row holding NaN or Inf, or -1
  Index bad_col = -1;
  double max_abs = 0.0;
};

// Finds the first NaN/Inf and the largest |value| in one read of the array.
template <class T>
Scan scan(const MatrixView<T>& a, int num_threads) {
  Index bad_row = std::numeric_limits<Index>::max();
  double top = 0.0;
  const Index rows = a.rows;
  (void)num_threads;
#pragma omp parallel for schedule(static) reduction(min : bad_row) reduction(max : top) \
    num_threads(num_threads)
  for (Index i = 0; i < rows; ++i) {
    unsigned non_finite = 0;
    const double m = static_cast<double>(row_max_abs(a, i, non_finite));
    if (non_finite != 0 && i < bad_row) bad_row = i;
    top = m > top ? m : top;
  }
  Scan out;
  out.max_abs = top;
  if (bad_row == std::numeric_limits<Index>::max()) return out;
  out.bad_row = bad_row;
  out.bad_col = 0;
  for (Index j = 0; j < a.cols; ++j) {
    if (!std::isfinite(a(bad_row, j))) {
      out.bad_col = j;
      break;
    }
  }
  return out;
}

template <class T>
double checked_max_abs(const MatrixView<T>& a, const char* name, int num_threads) {
  const Scan s = scan(a, num_threads);
  if (s.bad_row >= 0) {
    throw std::invalid_argument(std::string(name) + " contains NaN or Inf (first at row " +
                                std::to_string(s.bad_row) + ", column " + std::to_string(s.bad_col) +
                                ")");
  }
  return s.max_abs;
}

std::string scientific(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", v);
  return text;
}

// Copies rows [r0, r0 + nr) of x and y side by side into the row-major block (row length n =
// x.cols + y.cols) as float64, and adds the column sums (per thread, then in thread order, so
// that results do not depend on timing). C-order rows convert as a straight vectorizable copy.
template <class TX, class TY, class TO = double>
void convert_rows(const MatrixView<TX>& x, const MatrixView<TY>& y, Index r0, Index nr, TO* block,
                  double* sums, int num_threads) {
  const Index n = x.cols + y.cols;
  // Column sums per thread, added in thread order afterwards (results do not depend on timing).
  std::vector<std::vector<double>> partial(static_cast<std::size_t>(std::max(num_threads, 1)));
#pragma omp parallel num_threads(num_threads)
  {
#ifdef _OPENMP
    const auto t = static_cast<std::size_t>(omp_get_thread_num());
#else
    const std::size_t t = 0;
#endif
    std::vector<double>& local = partial[t];
    local.assign(static_cast<std::size_t>(n), 0.0);
#pragma omp for schedule(static)
    for (Index i = 0; i < nr; ++i) {
      TO* out = block + i * n;
      const TX* xi = x.row_start(r0 + i);
      for (Index j = 0; j < x.cols; ++j) out[j] = static_cast<TO>(xi[j * x.col_stride]);
      const TY* yi = y.row_start(r0 + i);
      for (Index j = 0; j < y.cols; ++j) out[x.cols + j] = static_cast<TO>(yi[j * y.col_stride]);
      for (Index j = 0; j < n; ++j) local[static_cast<std::size_t>(j)] += out[j];
    }
  }
  for (const auto& local : partial) {
    for (std::size_t j = 0; j < local.size(); ++j) sums[j] += local[j];
  }
}

std::atomic<Index> g_mixed_rows{kDefaultMixedRows};

}  // namespace

Index mixed_block_rows() { return g_mixed_rows.load(); }

void set_mixed_block_rows(Index rows) {
  if (rows < 1) throw std::invalid_argument("rows must be >= 1, got " + std::to_string(rows));
  g_mixed_rows = rows;
}

template <class Body>
void GramAccumulator::add_blocks(Index rows, Index rows_per_block, StopPoll& stop, Body&& body) {
  stop.poll();  // nothing changed yet
  if (!stop.active() || rows <= rows_per_block) {
    for (Index r0 = 0; r0 < rows; r0 += rows_per_block) body(r0, std::min(rows_per_block, rows - r0));
    return;
  }
  // Several blocks, interruptible: keep the lower triangle (packed) and the sums to restore.
  const Index n = lower_.rows();
  std::vector<double> saved_lower;
  saved_lower.reserve(static_cast<std::size_t>(n * (n + 1) / 2));
  for (Index j = 0; j < n; ++j) {
    const double* col = lower_.data() + j * n;
    saved_lower.insert(saved_lower.end(), col + j, col + n);
  }
  const Eigen::VectorXd saved_sums = sums_;
  try {
    for (Index r0 = 0; r0 < rows; r0 += rows_per_block) {
      if (r0 > 0) stop.poll();
      body(r0, std::min(rows_per_block, rows - r0));
    }
  } catch (const Interrupted&) {
    const double* from = saved_lower.data();
    for (Index j = 0; j < n; ++j) {
      std::copy(from, from + (n - j), lower_.data() + j * n + j);
      from += n - j;
    }
    sums_ = saved_sums;
    throw;
  }
}

void GramAccumulator::add_mixed(const MatrixView<float>& x, const MatrixView<float>& y, int num_threads,
                                StopPoll& stop) {
  const Index n = n_x_ + n_y_;
  const Index budget = std::max<Index>((Index{16} << 20) / (4 * n), 256);  // 16 MiB of float32
  const Index rows_per_block = std::min({mixed_block_rows(), budget, std::max<Index>(x.rows, 1)});
  Eigen::VectorXf block(rows_per_block * n);
  add_blocks(x.rows, rows_per_block, stop, [&](Index r0, Index nr) {
    convert_rows(x, y, r0, nr, block.data(), sums_.data(), num_threads);
    syrk_lower_add_mixed(block.data(), nr, n, lower_.data(), n, num_threads);
  });
  n_samples_ += static_cast<std::int64_t>(x.rows);
}

GramAccumulator::GramAccumulator(Index n_x, Index n_y) : n_x_(n_x), n_y_(n_y) {
  if (n_x < 1 || n_y < 1) {
    throw std::invalid_argument("a Gram accumulator needs at least one neuron per layer, got n_x=" +
                                std::to_string(n_x) + " and n_y=" + std::to_string(n_y));
  }
  lower_ = Eigen::MatrixXd::Zero(n_x + n_y, n_x + n_y);
  sums_ = Eigen::VectorXd::Zero(n_x + n_y);
}

Index GramAccumulator::block_rows(Index n) {
  const Index target = (Index{16} << 20) / (8 * std::max<Index>(n, 1));
  return std::clamp<Index>(target, 256, Index{1} << 16);
}

template <class TX, class TY>
void GramAccumulator::update(const MatrixView<TX>& x, const MatrixView<TY>& y, int num_threads,
                             Precision precision, const StopCheck& should_stop) {
  if (x.cols != n_x_) {
    throw std::invalid_argument("X has " + std::to_string(x.cols) + " neurons but the Gram expects " +
                                std::to_string(n_x_));
  }
  if (y.cols != n_y_) {
    throw std::invalid_argument("Y has " + std::to_string(y.cols) + " neurons but the Gram expects " +
                                std::to_string(n_y_));
  }
  if (x.rows != y.rows) {
    throw std::invalid_argument("X has " + std::to_string(x.rows) + " samples but Y has " +
                                std::to_string(y.rows));
  }
  num_threads = usable_threads(num_threads);
  const ThreadScope scope(num_threads);  // Eigen's own GEMM threads follow it too
  StopPoll stop(should_stop);
  const double max_abs_x = checked_max_abs(x, "X", num_threads);
  stop.poll();
  const double max_abs_y = checked_max_abs(y, "Y", num_threads);
  std::lock_guard<std::mutex> lock(mutex_);
  check_magnitudes(max_abs_x, max_abs_y, x.rows);
  if constexpr (std::is_same_v<TX, float> && std::is_same_v<TY, float>) {
    // float32 products of values far from 1 could overflow or underflow in float32 where
    // float64 does not: such batches take the float64 pass.
    const double largest = std::max(max_abs_x, max_abs_y);
    if (precision == Precision::mixed && largest < kMixedMaxAbs && largest > kMixedMinAbs) {
      return add_mixed(x, y, num_threads, stop);
    }
  }

  const Index n = n_x_ + n_y_;
  const Index rows_per_block = std::min(block_rows(n), std::max<Index>(x.rows, 1));
  // One buffer, reused: the current block is nr x n, row-major (each sample contiguous), the
  // layout the SYRK kernel runs fastest on, whatever the input's layout (Fortran-order and
  // channels-first inputs are gathered row by row: measured as fast as a tiled transpose).
  Eigen::VectorXd block(rows_per_block * n);
  add_blocks(x.rows, rows_per_block, stop, [&](Index r0, Index nr) {
    convert_rows(x, y, r0, nr, block.data(), sums_.data(), num_threads);
    syrk_lower_add(block.data(), nr, n, lower_.data(), n, num_threads);
  });
  n_samples_ += static_cast<std::int64_t>(x.rows);
}

double GramAccumulator::tiny_limit() {
  return std::sqrt(std::numeric_limits<double>::min()) / std::numeric_limits<double>::epsilon();
}

// Refuses an update whose squares overflow float64 in the Gram (bounded by the layer's largest
// diagonal entry plus rows * max|value|^2; off-diagonal entries are bounded by the diagonal),
// or whose values are so small that their squares underflow while the layer holds nothing
// larger (the Gram would call every neuron dead).
void GramAccumulator::check_magnitudes(double max_abs_x, double max_abs_y, Index rows) const {
  const double largest = std::numeric_limits<double>::max();
  const double tiny = tiny_limit();
  const Index n = n_x_ + n_y_;
  for (int side = 0; side < 2; ++side) {
    const double top = side == 0 ? max_abs_x : max_abs_y;
    const char* name = side == 0 ? "X" : "Y";
    const Index first = side == 0 ? 0 : n_x_;
    const Index size = side == 0 ? n_x_ : n - n_x_;
    const double diag = lower_.diagonal().segment(first, size).maxCoeff();
    if (!(diag + static_cast<double>(rows) * (top * top) <= largest)) {
      throw std::invalid_argument(
          std::string(name) + " holds values up to " + scientific(top) +
          ": the Gram sums their squares, which overflow float64; rescale the activations "
          "(the match does not depend on scale)");
    }
    if (top > 0.0 && top < tiny && diag < tiny * tiny) {
      throw std::invalid_argument(
          std::string(name) + " holds values no larger than " + scientific(top) +
          ": their squares underflow float64 and every neuron would look dead; rescale the "
          "activations (the match does not depend on scale)");
    }
  }
}

void GramAccumulator::merge(const GramAccumulator& other) {
  if (other.n_x_ != n_x_ || other.n_y_ != n_y_) {
    throw std::invalid_argument("cannot merge Grams of layers (" + std::to_string(n_x_) + ", " +
                                std::to_string(n_y_) + ") and (" + std::to_string(other.n_x_) + ", " +
                                std::to_string(other.n_y_) + ")");
  }
  const GramState theirs = other.state();  // a copy first: merging an accumulator into itself
  std::lock_guard<std::mutex> lock(mutex_);
  Eigen::MatrixXd sum = lower_;
  sum.triangularView<Eigen::Lower>() += theirs.matrix;
  if (!sum.allFinite()) {
    throw std::invalid_argument("the merged Gram overflows float64; rescale the activations");
  }
  lower_ = std::move(sum);
  sums_ += theirs.sums;
  n_samples_ += theirs.n_samples;
}

void GramAccumulator::assign(const Eigen::MatrixXd& gram, const Eigen::VectorXd& sums,
                             std::int64_t n_samples) {
  const Index n = n_x_ + n_y_;
  if (gram.rows() != n || gram.cols() != n) {
    throw std::invalid_argument("gram must be " + std::to_string(n) + " x " + std::to_string(n) +
                                ", got " + std::to_string(gram.rows()) + " x " +
                                std::to_string(gram.cols()));
  }
  if (sums.size() != n) {
    throw std::invalid_argument("column_sums must have " + std::to_string(n) + " entries, got " +
                                std::to_string(sums.size()));
  }
  if (n_samples < 0) throw std::invalid_argument("n_samples must be >= 0");
  if (!gram.allFinite() || !sums.allFinite()) {
    throw std::invalid_argument("gram and column_sums must be finite");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  lower_ = gram;
  sums_ = sums;
  n_samples_ = n_samples;
}

Eigen::MatrixXd GramAccumulator::matrix() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Eigen::MatrixXd full = lower_.triangularView<Eigen::Lower>();
  full.triangularView<Eigen::StrictlyUpper>() = full.transpose();
  return full;
}

Eigen::VectorXd GramAccumulator::column_sums() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return sums_;
}

std::int64_t GramAccumulator::n_samples() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return n_samples_;
}

GramState GramAccumulator::state() const {
  GramState out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out.matrix = lower_.triangularView<Eigen::Lower>();
    out.sums = sums_;
    out.n_samples = n_samples_;
  }
  out.matrix.triangularView<Eigen::StrictlyUpper>() = out.matrix.transpose();
  return out;
}

template void GramAccumulator::update(const MatrixView<float>&, const MatrixView<float>&, int, Precision,
                                      const StopCheck&);
template void GramAccumulator::update(const MatrixView<float>&, const MatrixView<double>&, int,
                                      Precision, const StopCheck&);
template void GramAccumulator::update(const MatrixView<double>&, const MatrixView<float>&, int,
                                      Precision, const StopCheck&);
template void GramAccumulator::update(const MatrixView<double>&, const MatrixView<double>&, int,
                                      Precision, const StopCheck&);

}  // namespace nsm
