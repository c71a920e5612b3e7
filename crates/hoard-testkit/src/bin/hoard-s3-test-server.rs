//! Starts the test S3 server for manual experiments and prints how to reach it.
//! `hoard-s3-test-server [--tls]`; stops on Ctrl-C or end of input.

fn main() -> Result<(), hoard_testkit::BoxError> {
    let tls = std::env::args().any(|a| a == "--tls");
    let server = if tls {
        hoard_testkit::S3Server::https()?
    } else {
        hoard_testkit::S3Server::http()?
    };
    println!("export AWS_ACCESS_KEY_ID={}", hoard_testkit::ACCESS_KEY);
    println!("export AWS_SECRET_ACCESS_KEY={}", hoard_testkit::SECRET_KEY);
    println!("export AWS_EC2_METADATA_DISABLED=true");
    if let Some(pem) = &server.ca_pem {
        println!("export CA_CERT_DATA='{pem}'");
    }
    println!(
        "export RESTIC_REPOSITORY=s3:{}/bucket/prefix",
        server.endpoint
    );
    println!(
        "# data under {}; press Enter to stop",
        server.root.display()
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}
