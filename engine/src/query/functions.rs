//! Time-series SQL functions: `time_bucket` and `first(x, time)` / `last(x, time)`.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampNanosecondType;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field, FieldRef, TimeUnit};
use datafusion::arrow::compute::cast;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

pub(crate) fn register(ctx: &SessionContext) {
    // `time_bucket(interval, time)` as in TimescaleDB, with the argument order of `date_bin`.
    ctx.register_udf(datafusion::functions::datetime::date_bin().as_ref().clone().with_aliases(["time_bucket"]));
    ctx.register_udaf(AggregateUDF::new_from_impl(ByTime::new("last", true)));
    ctx.register_udaf(AggregateUDF::new_from_impl(ByTime::new("first", false)));
}

/// `last(x, time)` / `first(x, time)`: the value of `x` at the greatest / least `time`.
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

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}[value]", args.name), args.return_type().clone(), true)),
            Arc::new(Field::new(format!("{}[time]", args.name), DataType::Timestamp(TimeUnit::Nanosecond, None), true)),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let value = ScalarValue::try_from(args.return_field.data_type())?;
        Ok(Box::new(ByTimeAccumulator { latest: self.latest, value, time: None }))
    }
}

#[derive(Debug)]
struct ByTimeAccumulator {
    latest: bool,
    value: ScalarValue,
    time: Option<i64>,
}

impl ByTimeAccumulator {
    fn consider(&mut self, values: &ArrayRef, times: &ArrayRef) -> Result<()> {
        let times = cast(times, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let times = times.as_primitive::<TimestampNanosecondType>();
        let mut best: Option<(usize, i64)> = None;
        for i in 0..times.len() {
            if times.is_null(i) || values.is_null(i) {
                continue;
            }
            let t = times.value(i);
            let better = match best {
                None => true,
                Some((_, b)) => (self.latest && t >= b) || (!self.latest && t < b),
            };
            if better {
                best = Some((i, t));
            }
        }
        if let Some((i, t)) = best {
            let better = match self.time {
                None => true,
                Some(cur) => (self.latest && t >= cur) || (!self.latest && t < cur),
            };
            if better {
                self.value = ScalarValue::try_from_array(values, i)?;
                self.time = Some(t);
            }
        }
        Ok(())
    }
}

impl Accumulator for ByTimeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values {
            [v, t] => self.consider(v, t),
            _ => Err(DataFusionError::Internal("first/last take two arguments".into())),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::TimestampNanosecond(self.time, None)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }
}
