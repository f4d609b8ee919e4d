//! Time-series SQL functions: `time_bucket` and `first(x, time)` / `last(x, time)`.

use arrow_array::{Array, TimestampNanosecondArray};
use arrow_schema::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::Documentation;
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ExprFunctionExt, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

pub(crate) fn register(ctx: &SessionContext) {
    // `time_bucket(interval, time)` as in TimescaleDB, with the argument order
    // of `date_bin`, which it is, with a fast path for the common case.
    ctx.register_udf(ScalarUDF::new_from_impl(TimeBucket::new()));
    ctx.register_udaf(AggregateUDF::new_from_impl(ByTime::new("last", true)));
    ctx.register_udaf(AggregateUDF::new_from_impl(ByTime::new("first", false)));
}

/// Our `date_bin`, for plans built by rewrites.
pub(crate) fn date_bin_udf() -> std::sync::Arc<ScalarUDF> {
    std::sync::Arc::new(ScalarUDF::new_from_impl(TimeBucket::new()))
}

/// `date_bin` (alias `time_bucket`): DataFusion's, except that the common
/// case — two arguments, a nanosecond timestamp array and an interval
/// without months, binned from the Unix epoch — skips the per-row division:
/// rows of a scan come in time order within a series, so most rows fall in
/// the bucket of the row before.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TimeBucket {
    inner: ScalarUDF,
}

impl TimeBucket {
    fn new() -> Self {
        TimeBucket { inner: datafusion::functions::datetime::date_bin().as_ref().clone() }
    }
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        static ALIASES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| vec!["time_bucket".into()]);
        &ALIASES
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(iv))), ColumnarValue::Array(times)] =
            args.args.as_slice()
            && iv.months == 0
            && let DataType::Timestamp(TimeUnit::Nanosecond, tz) = times.data_type()
            && let Some(stride) =
                i64::from(iv.days).checked_mul(86_400_000_000_000).and_then(|d| d.checked_add(iv.nanoseconds))
            && stride > 0
            && let Some(times) = times.as_any().downcast_ref::<TimestampNanosecondArray>()
            && let Some(binned) = bucket_sorted_runs(times.values(), stride)
        {
            let out =
                TimestampNanosecondArray::new(binned.into(), times.nulls().cloned()).with_timezone_opt(tz.clone());
            return Ok(ColumnarValue::Array(std::sync::Arc::new(out)));
        }
        self.inner.invoke_with_args(args)
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// Floors every time to a multiple of `stride` (> 0) from the epoch,
/// dividing only when a time leaves the previous row's bucket. `None` if a
/// bucket start does not fit in an i64 (the general path reports it).
///
/// Times are checked a block at a time (a comparison the compiler
/// vectorizes); a block wholly in the current bucket is filled at once.
fn bucket_sorted_runs(times: &[i64], stride: i64) -> Option<Vec<i64>> {
    const BLOCK: usize = 32;
    let mut out = Vec::with_capacity(times.len());
    let (mut lo, mut hi) = (0i64, 0i64);
    let mut blocks = times.chunks_exact(BLOCK);
    for block in blocks.by_ref() {
        if block.iter().fold(true, |all, &t| all & (t >= lo) & (t < hi)) {
            out.resize(out.len() + BLOCK, lo);
            continue;
        }
        one_by_one(block, stride, &mut lo, &mut hi, &mut out)?;
    }
    one_by_one(blocks.remainder(), stride, &mut lo, &mut hi, &mut out)?;
    Some(out)
}

/// Floors `times` into `out`, dividing only when a time leaves `lo..hi`
/// (the current bucket, updated).
fn one_by_one(times: &[i64], stride: i64, lo: &mut i64, hi: &mut i64, out: &mut Vec<i64>) -> Option<()> {
    for &t in times {
        if t < *lo || t >= *hi {
            *lo = t.checked_sub(t.rem_euclid(stride))?;
            *hi = lo.saturating_add(stride);
        }
        out.push(*lo);
    }
    Some(())
}

/// `last(x, time)` / `first(x, time)`: the latest / earliest non-null `x` by
/// `time`. Rewritten during planning into DataFusion's own
/// `last_value(x ORDER BY time) IGNORE NULLS` (resp. `first_value`), so
/// grouping uses its accumulators.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ByTime {
    name: &'static str,
    latest: bool,
    signature: Signature,
}

impl ByTime {
    fn new(name: &'static str, latest: bool) -> Self {
        ByTime { name, latest, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl AggregateUDFImpl for ByTime {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{}(value, time) takes two arguments", self.name)))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Err(DataFusionError::Internal(format!(
            "{}(value, time) is rewritten to first_value/last_value before execution",
            self.name
        )))
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        let (name, latest) = (self.name, self.latest);
        Some(Box::new(move |call: AggregateFunction, _ctx| {
            let params = call.params;
            let mut args = params.args.into_iter();
            let (Some(value), Some(time), None) = (args.next(), args.next(), args.next()) else {
                return Err(DataFusionError::Plan(format!("{name}(value, time) takes two arguments")));
            };
            let target = if latest { last_value_udaf() } else { first_value_udaf() };
            let mut builder = target
                .call(vec![value])
                .order_by(vec![time.sort(true, false)])
                .null_treatment(NullTreatment::IgnoreNulls);
            if let Some(filter) = params.filter {
                builder = builder.filter(*filter);
            }
            builder.build()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_sorted_runs;
    use proptest::prelude::*;

    proptest! {
        /// Equal to flooring each time on its own, sorted or not.
        #[test]
        fn buckets_are_floors(
            mut times in proptest::collection::vec(-10_000_000_000i64..10_000_000_000, 0..400),
            stride in 1i64..5_000_000_000,
            sorted in any::<bool>(),
        ) {
            if sorted {
                times.sort_unstable();
            }
            let expected: Vec<i64> = times.iter().map(|t| t.div_euclid(stride) * stride).collect();
            prop_assert_eq!(bucket_sorted_runs(&times, stride), Some(expected));
        }
    }

    #[test]
    fn a_bucket_outside_i64_falls_back() {
        assert_eq!(bucket_sorted_runs(&[i64::MIN + 1], 10), None);
        assert_eq!(bucket_sorted_runs(&[i64::MAX], 10), Some(vec![i64::MAX - i64::MAX % 10]));
    }
}
