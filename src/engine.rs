//! The only code that joins the drivers: discover -> read git -> ask registries -> choose.

pub struct PlanOptions {}
pub struct PlanReport {}
pub async fn plan(_o: PlanOptions) -> PlanReport { todo!() }
