//! Time-series SQL functions: `time_bucket` and `first(x, time)` / `last(x, time)`.

use arrow_schema::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment};
use datafusion::logical_expr::function::{AccumulatorArgs, AggregateFunctionSimplification};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, ExprFunctionExt, Signature, Volatility};
use datafusion::prelude::SessionContext;

pub(crate) fn register(ctx: &SessionContext) {
    // `time_bucket(interval, time)` as in TimescaleDB, with the argument order of `date_bin`.
    ctx.register_udf(datafusion::functions::datetime::date_bin().as_ref().clone().with_aliases(["time_bucket"]));
    ctx.register_udaf(AggregateUDF::new_from_impl(ByTime::new("last", true)));
    ctx.register_udaf(AggregateUDF::new_from_impl(ByTime::new("first", false)));
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
