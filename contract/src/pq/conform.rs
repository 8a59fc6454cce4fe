//! Columns as other tools write them, read as the contract's types.
//!
//! pyarrow, Polars and DuckDB write the contract's columns back with other
//! physical choices for the same logical type (analysts.md invites users to
//! edit parts with them): strings as `large_string`, `string_view` or
//! dictionaries; lists as `large_list`, with items named `element` and
//! nullable; integers of another width (DuckDB's `BIGINT` for a computed
//! count); timestamps in microseconds or nanoseconds, with the UTC zone
//! spelt `+00:00` or `Etc/UTC`. [`convertible`] says which types read as a
//! contract type, and [`conform`] converts a column, value by value checked:
//! an integer that does not fit, a null in a non-null list item or a
//! timestamp of another zone is an error naming the value, never a silent
//! change. Types of another logical kind (a string for a number, a naive
//! timestamp for a UTC one) are refused by [`convertible`].

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{
    Array, ArrayRef, Float64Array, GenericListArray, ListArray, OffsetSizeTrait, StringArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, TimeUnit};

/// Whether a column the file holds as `got` can be read as the contract's
/// `want`: the same logical type (see the module documentation).
pub(crate) fn convertible(got: &DataType, want: &DataType) -> bool {
    use DataType::*;
    if got == want {
        return true;
    }
    match (got, want) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8) => true,
        (Dictionary(_, values), Utf8) => convertible(values, want),
        (Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64, UInt32 | UInt64) => true,
        (Float16 | Float32 | Float64, Float64) => true,
        (Timestamp(_, Some(a)), Timestamp(_, Some(b))) => is_utc(a) && is_utc(b),
        (List(a) | LargeList(a), List(b)) => convertible(a.data_type(), b.data_type()),
        _ => false,
    }
}

/// Time zone names that mean UTC.
fn is_utc(tz: &str) -> bool {
    matches!(
        tz.to_ascii_uppercase().as_str(),
        "UTC" | "Z" | "+00:00" | "+0000" | "+00" | "ETC/UTC" | "GMT" | "ETC/GMT" | "UCT" | "ZULU"
    )
}

/// `array` as the contract's type `want`, where [`convertible`] allows it.
///
/// # Errors
/// A message naming the first value that cannot be held by `want` (an
/// integer out of range, a null list item where items are non-null), or the
/// types when they are not [`convertible`].
pub(crate) fn conform(array: ArrayRef, want: &DataType) -> Result<ArrayRef, String> {
    use DataType::*;
    let got = array.data_type().clone();
    if &got == want {
        return Ok(array);
    }
    let refused = || format!("has type {got}, which cannot be read as {want}");
    match (&got, want) {
        (LargeUtf8, Utf8) => Ok(Arc::new(
            array.as_string::<i64>().iter().collect::<StringArray>(),
        )),
        (Utf8View, Utf8) => Ok(Arc::new(
            array.as_string_view().iter().collect::<StringArray>(),
        )),
        (Dictionary(_, _), Utf8) => {
            let dict = array.as_any_dictionary();
            let keys: UInt64Array = dict
                .normalized_keys()
                .into_iter()
                .enumerate()
                .map(|(i, k)| dict.keys().is_valid(i).then_some(k as u64))
                .collect();
            let values = arrow_select::take::take(dict.values().as_ref(), &keys, None)
                .map_err(|e| e.to_string())?;
            conform(values, want)
        }
        (_, UInt32) => {
            let v = integers(&array).ok_or_else(refused)?;
            let out = v
                .map(|x| {
                    x.map(|x| u32::try_from(x).map_err(|_| out_of_range(x, want)))
                        .transpose()
                })
                .collect::<Result<UInt32Array, _>>()?;
            Ok(Arc::new(out))
        }
        (_, UInt64) => {
            let v = integers(&array).ok_or_else(refused)?;
            let out = v
                .map(|x| {
                    x.map(|x| u64::try_from(x).map_err(|_| out_of_range(x, want)))
                        .transpose()
                })
                .collect::<Result<UInt64Array, _>>()?;
            Ok(Arc::new(out))
        }
        (Float16, Float64) => Ok(Arc::new(
            array
                .as_primitive::<arrow_array::types::Float16Type>()
                .iter()
                .map(|x| x.map(f64::from))
                .collect::<Float64Array>(),
        )),
        (Float32, Float64) => Ok(Arc::new(
            array
                .as_primitive::<arrow_array::types::Float32Type>()
                .iter()
                .map(|x| x.map(f64::from))
                .collect::<Float64Array>(),
        )),
        (Timestamp(unit, Some(tz)), Timestamp(TimeUnit::Millisecond, Some(want_tz)))
            if is_utc(tz) =>
        {
            let ms = timestamps_ms(&array, *unit)?;
            Ok(Arc::new(ms.with_timezone(want_tz.clone())))
        }
        (List(_), List(item)) => list(array.as_list::<i32>(), item),
        (LargeList(_), List(item)) => list(array.as_list::<i64>(), item),
        _ => Err(refused()),
    }
}

fn out_of_range(x: i128, want: &DataType) -> String {
    format!("holds {x}, which does not fit {want}")
}

/// The values of an integer column of any width, widened.
fn integers(array: &ArrayRef) -> Option<Box<dyn Iterator<Item = Option<i128>> + '_>> {
    macro_rules! widen {
        ($t:ty) => {
            Some(Box::new(
                array.as_primitive::<$t>().iter().map(|x| x.map(i128::from)),
            ))
        };
    }
    match array.data_type() {
        DataType::Int8 => widen!(Int8Type),
        DataType::Int16 => widen!(Int16Type),
        DataType::Int32 => widen!(Int32Type),
        DataType::Int64 => widen!(Int64Type),
        DataType::UInt8 => widen!(UInt8Type),
        DataType::UInt16 => widen!(UInt16Type),
        DataType::UInt32 => widen!(UInt32Type),
        DataType::UInt64 => widen!(UInt64Type),
        _ => None,
    }
}

/// Timestamps of any unit in milliseconds, rounded toward the past (the
/// contract's resolution; a time written from it is a whole millisecond).
fn timestamps_ms(array: &ArrayRef, unit: TimeUnit) -> Result<TimestampMillisecondArray, String> {
    let scaled = |v: Option<i64>, num: i64, den: i64| -> Result<Option<i64>, String> {
        v.map(|v| {
            v.checked_mul(num)
                .map(|v| v.div_euclid(den))
                .ok_or_else(|| format!("holds the time {v} ({unit:?}), out of range"))
        })
        .transpose()
    };
    match unit {
        TimeUnit::Second => array
            .as_primitive::<TimestampSecondType>()
            .iter()
            .map(|v| scaled(v, 1000, 1))
            .collect(),
        TimeUnit::Millisecond => Ok(array
            .as_primitive::<TimestampMillisecondType>()
            .iter()
            .collect()),
        TimeUnit::Microsecond => array
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| scaled(v, 1, 1000))
            .collect(),
        TimeUnit::Nanosecond => array
            .as_primitive::<TimestampNanosecondType>()
            .iter()
            .map(|v| scaled(v, 1, 1_000_000))
            .collect(),
    }
}

/// A list column rebuilt with the contract's item field (name, type and
/// nullability), its offsets narrowed to 32 bits.
fn list<O: OffsetSizeTrait>(
    array: &GenericListArray<O>,
    item: &FieldRef,
) -> Result<ArrayRef, String> {
    let values =
        conform(array.values().clone(), item.data_type()).map_err(|e| format!("items: {e}"))?;
    let offsets: Vec<i32> = array
        .offsets()
        .iter()
        .map(|o| {
            i32::try_from(o.as_usize())
                .map_err(|_| "holds more items than a list of 32-bit offsets".to_string())
        })
        .collect::<Result<_, _>>()?;
    // Only the items the lists reach: a null list may still span some.
    if !item.is_nullable() {
        let (first, last) = (offsets[0] as usize, *offsets.last().unwrap_or(&0) as usize);
        let nulls = values.slice(first, last - first).null_count();
        if nulls > 0 {
            return Err(format!(
                "holds {nulls} null items, where items are never null"
            ));
        }
    }
    ListArray::try_new(
        item.clone(),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        values,
        array.nulls().cloned(),
    )
    .map(|l| Arc::new(l) as ArrayRef)
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{LargeListBuilder, UInt32Builder};
    use arrow_array::{Int64Array, LargeStringArray, TimestampMicrosecondArray};
    use arrow_schema::Field;

    #[test]
    fn the_same_logical_types_convert_and_values_that_do_not_fit_are_named() {
        let s: ArrayRef = Arc::new(LargeStringArray::from(vec![Some("a"), None]));
        let got = conform(s, &DataType::Utf8).unwrap();
        assert_eq!(got.as_string::<i32>().value(0), "a");
        assert!(got.is_null(1));

        let n: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), None]));
        let got = conform(n, &DataType::UInt32).unwrap();
        assert_eq!(got.as_primitive::<UInt32Type>().value(0), 7);
        let n: ArrayRef = Arc::new(Int64Array::from(vec![-1]));
        let err = conform(n, &DataType::UInt32).unwrap_err();
        assert!(err.contains("holds -1"), "{err}");

        let t: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![1_500_999, -1]).with_timezone("+00:00"));
        let want = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let got = conform(t, &want).unwrap();
        assert_eq!(got.data_type(), &want);
        let got = got.as_primitive::<TimestampMillisecondType>();
        assert_eq!((got.value(0), got.value(1)), (1_500, -1));
        // A naive time, or another zone, is another logical type.
        let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert!(!convertible(&naive, &want));
        let paris = DataType::Timestamp(TimeUnit::Millisecond, Some("Europe/Paris".into()));
        assert!(!convertible(&paris, &want));
        assert!(!convertible(&DataType::Utf8, &DataType::UInt32));

        let item = Arc::new(Field::new("item", DataType::UInt32, false));
        let mut b = LargeListBuilder::new(UInt32Builder::new()).with_field(Arc::new(Field::new(
            "element",
            DataType::UInt32,
            true,
        )));
        b.append_value([Some(1), Some(2)]);
        b.append_null();
        b.append_value([Some(3)]);
        let got = conform(Arc::new(b.finish()), &DataType::List(item.clone())).unwrap();
        assert_eq!(got.data_type(), &DataType::List(item.clone()));
        let got = got.as_list::<i32>();
        assert_eq!(got.value_offsets(), &[0, 2, 2, 3]);
        assert!(got.is_null(1));
        let mut b = LargeListBuilder::new(UInt32Builder::new());
        b.append_value([Some(1), None]);
        let err = conform(Arc::new(b.finish()), &DataType::List(item)).unwrap_err();
        assert!(err.contains("1 null items"), "{err}");
    }
}
