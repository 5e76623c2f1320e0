fn main() {
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(128 << 10).make().unwrap();
    ex.run(async { println!("ok"); });
    let ring: io_uring::IoUring = io_uring::IoUring::builder().setup_single_issuer().setup_defer_taskrun().setup_taskrun_flag().build(64).unwrap();
    drop(ring);
}
