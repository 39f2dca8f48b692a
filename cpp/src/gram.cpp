#include "nsm/gram.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace nsm {
namespace {

constexpr Index kTile = 64;  // columns per task when converting Fortran-order input

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

// Copies rows [r0, r0 + nr) of a into columns [c0, c0 + a.cols) of the column-major block
// (leading dimension ld) as float64, and adds each column's sum to sums. For inputs whose
// columns are contiguous (Fortran order).
template <class T>
void convert_rows_to_columns(const MatrixView<T>& a, Index r0, Index nr, double* block, Index ld,
                             Index c0, double* sums, int num_threads) {
  const Index col_tiles = (a.cols + kTile - 1) / kTile;
  (void)num_threads;
#pragma omp parallel for schedule(static) num_threads(num_threads)
  for (Index t = 0; t < col_tiles; ++t) {
    const Index j0 = t * kTile;
    const Index j1 = std::min(a.cols, j0 + kTile);
    for (Index j = j0; j < j1; ++j) {
      double* out = block + (c0 + j) * ld;
      double sum = 0.0;
      for (Index i = 0; i < nr;) {  // one run of rows at a time (a whole group for images)
        const Index len = std::min(nr - i, a.run(r0 + i));
        const T* in = a.row_start(r0 + i) + j * a.col_stride;
        for (Index k = 0; k < len; ++k) {
          const double v = static_cast<double>(in[k * a.row_stride]);
          out[i + k] = v;
          sum += v;
        }
        i += len;
      }
      sums[c0 + j] += sum;
    }
  }
}

// Copies rows [r0, r0 + nr) of x and y side by side into the row-major block (row length n =
// x.cols + y.cols) as float64, and adds the column sums. For inputs whose rows are contiguous
// (C order): a straight, vectorizable conversion, no transpose.
template <class TX, class TY>
void convert_rows_to_rows(const MatrixView<TX>& x, const MatrixView<TY>& y, Index r0, Index nr,
                          double* block, double* sums, int num_threads) {
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
      double* out = block + i * n;
      const TX* xi = x.row_start(r0 + i);
      for (Index j = 0; j < x.cols; ++j) out[j] = static_cast<double>(xi[j * x.col_stride]);
      const TY* yi = y.row_start(r0 + i);
      for (Index j = 0; j < y.cols; ++j) out[x.cols + j] = static_cast<double>(yi[j * y.col_stride]);
      for (Index j = 0; j < n; ++j) local[static_cast<std::size_t>(j)] += out[j];
    }
  }
  for (const auto& local : partial) {
    for (std::size_t j = 0; j < local.size(); ++j) sums[j] += local[j];
  }
}

template <class T>
bool columns_contiguous(const MatrixView<T>& a) {
  return a.rows > 1 && std::abs(a.row_stride) < std::abs(a.col_stride);
}

}  // namespace

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
                             bool cross_only) {
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

  const Index n = n_x_ + n_y_;
  const Index rows_per_block = std::min(block_rows(n), std::max<Index>(x.rows, 1));
  // One buffer, reused: the current block is nr x n, row-major (rows contiguous, like C-order
  // input) unless both inputs have contiguous columns (Fortran order), then column-major.
  const bool by_columns = columns_contiguous(x) && columns_contiguous(y);
  Eigen::VectorXd ignored_sums;
  if (cross_only) ignored_sums = Eigen::VectorXd::Zero(n);
  double* sums = cross_only ? ignored_sums.data() : sums_.data();
  Eigen::VectorXd block(rows_per_block * n);
  for (Index r0 = 0; r0 < x.rows; r0 += rows_per_block) {
    const Index nr = std::min(rows_per_block, x.rows - r0);
    if (by_columns) {
      convert_rows_to_columns(x, r0, nr, block.data(), nr, 0, sums, num_threads);
      convert_rows_to_columns(y, r0, nr, block.data(), nr, n_x_, sums, num_threads);
    } else {
      convert_rows_to_rows(x, y, r0, nr, block.data(), sums, num_threads);
    }
    syrk_lower_add(block.data(), nr, n, !by_columns, n_x_, cross_only, lower_.data(), n, num_threads);
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

template void GramAccumulator::update(const MatrixView<float>&, const MatrixView<float>&, int, bool);
template void GramAccumulator::update(const MatrixView<float>&, const MatrixView<double>&, int, bool);
template void GramAccumulator::update(const MatrixView<double>&, const MatrixView<float>&, int, bool);
template void GramAccumulator::update(const MatrixView<double>&, const MatrixView<double>&, int, bool);

}  // namespace nsm
