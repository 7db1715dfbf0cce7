def test_s3_server_round_trips_an_object(s3_server, s3_bucket):
    client = s3_server.boto3_client()
    client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"hello"
