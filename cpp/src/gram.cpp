#include "nsm/gram.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace nsm {
namespace {

// True if row i of a holds NaN or Inf. Branch-free so that the compiler vectorizes it.
template <class T>
bool row_has_non_finite(const MatrixView<T>& a, Index i) {
  constexpr T largest = std::numeric_limits<T>::max();
  unsigned flag = 0;
  const T* row = a.row_start(i);
  if (a.col_stride == 1) {
    for (Index j = 0; j < a.cols; ++j) flag |= static_cast<unsigned>(!(std::abs(row[j]) <= largest));
  } else {
    for (Index j = 0; j < a.cols; ++j) {
      flag |= static_cast<unsigned>(!(std::abs(row[j * a.col_stride]) <= largest));
    }
  }
  return flag != 0;
}

// Returns the first (row, col) holding NaN or Inf, or (-1, -1). Reads the array once.
template <class T>
std::pair<Index, Index> first_non_finite(const MatrixView<T>& a, int num_threads) {
  Index bad_row = std::numeric_limits<Index>::max();
  const Index rows = a.rows;
  (void)num_threads;
#pragma omp parallel for schedule(static) reduction(min : bad_row) num_threads(num_threads)
  for (Index i = 0; i < rows; ++i) {
    if (i < bad_row && row_has_non_finite(a, i)) bad_row = i;
  }
  if (bad_row == std::numeric_limits<Index>::max()) return {-1, -1};
  for (Index j = 0; j < a.cols; ++j) {
    if (!std::isfinite(a(bad_row, j))) return {bad_row, j};
  }
  return {bad_row, 0};  // unreachable
}

template <class T>
void check_finite(const MatrixView<T>& a, const char* name, int num_threads) {
  const auto [row, col] = first_non_finite(a, num_threads);
  if (row >= 0) {
    throw std::invalid_argument(std::string(name) + " contains NaN or Inf (first at row " +
                                std::to_string(row) + ", column " + std::to_string(col) + ")");
  }
}

// Copies rows [r0, r0 + nr) of x and y side by side into the row-major block (row length n =
// x.cols + y.cols) as float64, and adds the column sums (per thread, then in thread order, so
// that results do not depend on timing). C-order rows convert as a straight vectorizable copy.
template <class TX, class TY, class TO = double>
void convert_rows(const MatrixView<TX>& x, const MatrixView<TY>& y, Index r0, Index nr,
                          TO* block, double* sums, int num_threads) {
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

void GramAccumulator::add_mixed(const MatrixView<float>& x, const MatrixView<float>& y, int num_threads,
                                bool cross_only) {
  const Index n = n_x_ + n_y_;
  const Index budget = std::max<Index>((Index{16} << 20) / (4 * n), 256);  // 16 MiB of float32
  const Index rows_per_block = std::min({mixed_block_rows(), budget, std::max<Index>(x.rows, 1)});
  Eigen::VectorXd ignored_sums;
  if (cross_only) ignored_sums = Eigen::VectorXd::Zero(n);
  double* sums = cross_only ? ignored_sums.data() : sums_.data();
  Eigen::VectorXf block(rows_per_block * n);
  for (Index r0 = 0; r0 < x.rows; r0 += rows_per_block) {
    const Index nr = std::min(rows_per_block, x.rows - r0);
    convert_rows(x, y, r0, nr, block.data(), sums, num_threads);
    syrk_lower_add_mixed(block.data(), nr, n, n_x_, cross_only, lower_.data(), n, num_threads);
  }
  if (!cross_only) n_samples_ += static_cast<std::int64_t>(x.rows);
}

GramAccumulator::GramAccumulator(Index n_x, Index n_y)
    : n_x_(n_x), n_y_(n_y) {
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
                             bool cross_only, Precision precision) {
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
  num_threads = std::max(num_threads, 1);
  check_finite(x, "X", num_threads);
  check_finite(y, "Y", num_threads);
  if constexpr (std::is_same_v<TX, float> && std::is_same_v<TY, float>) {
    if (precision == Precision::mixed) return add_mixed(x, y, num_threads, cross_only);
  }

  const Index n = n_x_ + n_y_;
  const Index rows_per_block = std::min(block_rows(n), std::max<Index>(x.rows, 1));
  // One buffer, reused: the current block is nr x n, row-major (each sample contiguous), the
  // layout the SYRK kernel runs fastest on, whatever the input's layout (Fortran-order and
  // channels-first inputs are gathered row by row: measured as fast as a tiled transpose).
  Eigen::VectorXd ignored_sums;
  if (cross_only) ignored_sums = Eigen::VectorXd::Zero(n);
  double* sums = cross_only ? ignored_sums.data() : sums_.data();
  Eigen::VectorXd block(rows_per_block * n);
  for (Index r0 = 0; r0 < x.rows; r0 += rows_per_block) {
    const Index nr = std::min(rows_per_block, x.rows - r0);
    convert_rows(x, y, r0, nr, block.data(), sums, num_threads);
    syrk_lower_add(block.data(), nr, n, n_x_, cross_only, lower_.data(), n, num_threads);
  }
  if (!cross_only) n_samples_ += static_cast<std::int64_t>(x.rows);
}

void GramAccumulator::merge(const GramAccumulator& other) {
  if (other.n_x_ != n_x_ || other.n_y_ != n_y_) {
    throw std::invalid_argument("cannot merge Grams of layers (" + std::to_string(n_x_) + ", " +
                                std::to_string(n_y_) + ") and (" + std::to_string(other.n_x_) +
                                ", " + std::to_string(other.n_y_) + ")");
  }
  lower_.triangularView<Eigen::Lower>() += other.lower_;
  sums_ += other.sums_;
  n_samples_ += other.n_samples_;
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
  lower_ = gram;
  sums_ = sums;
  n_samples_ = n_samples;
}

Eigen::MatrixXd GramAccumulator::matrix() const {
  Eigen::MatrixXd full = lower_.triangularView<Eigen::Lower>();
  full.triangularView<Eigen::StrictlyUpper>() = full.transpose();
  return full;
}

template void GramAccumulator::update(const MatrixView<float>&, const MatrixView<float>&, int, bool,
                                      Precision);
template void GramAccumulator::update(const MatrixView<float>&, const MatrixView<double>&, int, bool,
                                      Precision);
template void GramAccumulator::update(const MatrixView<double>&, const MatrixView<float>&, int, bool,
                                      Precision);
template void GramAccumulator::update(const MatrixView<double>&, const MatrixView<double>&, int, bool,
                                      Precision);

}  // namespace nsm
